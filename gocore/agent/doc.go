// Package agent carries a node's remote operations: the operations that a
// process of one node performs on an object (channel, semaphore, process)
// that lives on another node.
//
// Every node of a multi-node run has one Agent. Its processes reach it over
// a Unix socket (abstract name "@dragon_mp.<local run id>.agent", served to
// processes of the agent's own uid only) with a Client; each request is a
// wire.Frame whose Addr names the object, so its bits 63..48 name the owner
// node. The agent forwards the request over the QUIC mesh (gocore/transport)
// to the owner's agent, which runs it with its Executor (the same code a
// local caller would run) and sends the reply back the same way.
//
// Contract:
//   - A Client's calls are synchronous: a process's requests from one thread
//     run in order, so a producer's sends stay FIFO across nodes, and a
//     bounded remote channel blocks the sender exactly as a local one would.
//   - Requests run on the owner in their own goroutine, so a blocked remote
//     get never stalls other traffic on the same link.
//   - A post (wire.KindPost) wants no reply: the client writes it and goes
//     on. A process's posts travel on one connection and one lane per
//     address and run on the owner in the delivering goroutine, so they keep
//     their order; only quick operations may be posted (a send to an
//     unbounded channel). A failed post is printed on the agent's stderr.
//   - When a peer node is lost, every request waiting on it gets a reply
//     with Code CodePeerLost at once, and so does every later request for it.
//   - Nothing is lost in flight: an operation that takes something (a
//     message, a lock) replies with ackWanted; the requester's agent acks
//     once its process has the reply. If the requester's node is lost first,
//     or the process is gone, the owner runs the operation's undo (the
//     message goes back into its channel, the lock is released).
//   - The lane of a request is its Addr: the mesh keeps one lane in order.
//
// Lock order: Agent.mu is a leaf; it is never held while sending.
package agent

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
//   - When a peer node is lost, every request waiting on it gets a reply
//     with Code CodePeerLost at once, and so does every later request for it.
//   - The lane of a request is its Addr: the mesh keeps one lane in order.
//
// Lock order: Agent.mu is a leaf; it is never held while sending.
package agent

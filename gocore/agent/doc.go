// Package agent carries the operations that a process of one node performs
// on an object (channel, semaphore, process) that lives on another node.
//
// Every node of a multi-node run has one Agent, in the process that runs
// the node's part of the run (the launcher on node 0). It serves:
//
//   - the node's own processes, on an abstract Unix socket (SocketName),
//     to processes of its own user only: the node's identity (certificate
//     and key of the run's CA) and where the other nodes' agents listen;
//   - the processes of other nodes, over data connections (TLS 1.3 over
//     TCP with the run's CA, gocore/transport): it runs their operations
//     here, with its Executor (the very entry points a local caller uses),
//     and answers.
//
// A process's Client dials each node it uses once (one connection per
// node, shared by the process's threads) and reads its replies on the
// calling thread. The agents' QUIC mesh (gocore/transport) carries no
// operation: it tells, between agents, which nodes are alive.
//
// # Contract
//
//   - Order. A process's operations on one node start there in the order
//     the process made them: posts and requests that cannot block run on
//     the connection's reader, in order; a request that would block runs
//     on a goroutine of its own, so a waiting get never holds up the
//     process's other threads.
//   - Posts. A post (wire.KindPost) wants no reply: the client writes it
//     and goes on, as stdlib's Queue.put hands its object to a feeder
//     thread. Only operations that cannot block are posted. A post that
//     fails there is reported back (wire.KindPostFailed) and raised by the
//     process's next operation on the same object, or by its next Sync.
//   - Fences. A request to node X starts only after every post of the
//     process to any other node has run there (the client syncs those
//     nodes first); posts to X itself are ordered by the connection. So a
//     process never observes an object in a state older than its own
//     posts, and Sync/SyncAll (called when the process ends, and by
//     Queue.join_thread) make everything it posted visible before its exit
//     is.
//   - Nothing lost in flight. A reply that takes something (a message, a
//     lock) asks for an ack (ackWanted); the client acks once the reply is
//     in the process. If the process dies first, or its node is lost, the
//     agent runs the operation's undo: the message goes back into its
//     channel, the lock is released.
//   - Loss. When the mesh reports a node lost, the agent marks it in shared
//     memory (Config.MarkLost) and closes that node's processes' data
//     connections (undoing what they had not acknowledged). A client
//     looks at the mark before every operation and, while a call waits,
//     every Step: a call waiting on a lost node fails with a *LostError
//     naming the node within the mesh's detection time plus one Step, and
//     any later operation on it fails at once. Any failure of a data
//     connection makes its node lost for the process too: what was posted
//     on it may be gone, so nothing may go on as if it were not.
//
// # Lock order
//
// Agent.mu and session.mu are leaves: never held while calling the
// executor, the mesh or the network. session.wmu (and clientConn.wmu) is
// held only while writing one frame. Client.mu, clientConn.mu and
// controlConn.mu are leaves too: none is held while another is taken.
package agent

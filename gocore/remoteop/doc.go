// Package remoteop names the operations a process runs on the objects of
// another node, through that node's agent (gocore/agent), and the codes
// their error replies carry: the protocol shared by the requesters (the
// Python extension, pyext, and the C API, capi) and the executor that runs
// them on the owner's node (pyext/remote_exec.go).
//
// # Contract
//
//   - An operation is a wire.Frame: Op one of the Op constants, Addr the
//     object's address (a process operation: node<<48), Timeout the wait
//     allowed on the owner (a requester slices long waits, Slice at most,
//     so that an abandoned one ends there soon), Args and payload as listed
//     beside each constant: (args) -> results.
//   - A failed operation's reply has a non-zero Code, one of the Code
//     constants, and a message as its payload. The codes are also the ones
//     dragon_mp/_core.py maps to Python exceptions.
//   - The values are the protocol between the nodes of a run: every node
//     runs the same build, and a value is never reused for another meaning
//     (ops_test.go pins them).
package remoteop

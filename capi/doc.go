// Command capi is the C API of dragon_mp: the Go core built as a C shared
// library (libdragon_mp.so) for programs that are not Python. It is a
// `package main` built with -buildmode=c-shared (make capi; setup.py puts
// the library into dragon_mp/lib/) and is not bound by gopy: a Python
// process never loads it (it has the gopy module's runtime, pyext), so one
// process never holds two Go runtimes.
//
// include/dragon_mp.h declares what it exports, include/dragon_mp.hpp wraps
// that in C++ (RAII, exceptions), docs/c_api.md is the user's page.
//
// # Contract
//
//   - dmp_attach joins the run named by DRAGON_MP_RUN (the environment every
//     process of a run gets): it maps the run's pool read/write as a
//     non-head Python process does (runtime.Attach) and registers a ledger
//     (gocore/ledger) for this process. dmp_detach closes every handle still
//     open and unmaps the pool.
//   - Objects of other nodes: a descriptor may name an object of any node of
//     the run. Operations on it go to that node's agent (remote.go, the
//     operations of gocore/remoteop, as a Python process's do); its node
//     lost, they fail with DMP_ELOST. DMP_EREMOTE: no agent to reach it.
//   - Descriptors are strings made by Python (Queue.descriptor(),
//     Lock.descriptor()): "dmp1:<kind>:<run id>:<address in hex>", kind q
//     (a channel) or s (a semaphore: Lock, Semaphore). A descriptor of
//     another run, another kind, or of an object that is gone is refused with
//     DMP_EBADDESC; the generation bits of the address make a descriptor of
//     a freed object fail instead of reaching the object made next at the
//     same place.
//   - References: opening takes one counted reference to the object and
//     records it in this process's ledger (an object of another node's
//     too: this node's head releases that one there); closing forgets the
//     record, then drops the reference. If the process is killed, the run's head drops
//     its references and frees the pool blocks it held (a large message
//     being filled or read), as for a killed Python process (pyext/refs.go).
//     The object must be alive when it is opened: the Python side keeps its
//     Queue or Lock until the C program has opened it.
//   - Messages are raw bytes, sent and taken whole, in the channel's FIFO
//     order, meeting Python's Queue.put_bytes/get_bytes. dmp_queue_recv
//     hands a malloc'ed copy to the caller (dmp_free). Timeouts are in
//     nanoseconds: negative waits forever, 0 never waits.
//   - Errors: every function returns 0 or a negative DMP_E* code, and sets a
//     per-thread message (dmp_last_error) describing the failure.
//
// # Lock order
//
// state.mu (attach/detach, the handle tables) is a leaf: no channel or
// semaphore operation runs under it.
package main

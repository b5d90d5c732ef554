// Package shmsync holds synchronization primitives that live in shared
// memory and work across processes: Mutex, the guard of every shared data
// structure of the runtime, and the counting primitives the Python API is
// built on:
//
//   - Mutex: one word, holder pid; owner-death takeover.
//   - Semaphore: count, max (0 = unbounded), waiters; Lock = Init(1, 1),
//     BoundedSemaphore(n) = Init(n, n); ErrTooManyReleases past max.
//   - RecursiveLock: state, waiters, count, owner identity (caller-chosen,
//     non-zero, e.g. pid<<32|tid); ErrNotOwner on a foreign release.
//   - Event: flag + Set generation in one futex word, waiters; Set wakes all.
//
// Semaphore, RecursiveLock and Event spin briefly (an adaptive number of
// sched_yield rounds) before sleeping, register as waiters before sleeping so
// that wakers only enter the kernel when someone may sleep, and sleep in
// slices of at most 100 ms. They hold no Mutex.
//
// Each primitive is a fixed-layout struct of 32/64-bit words, placed by the
// caller inside a shared mapping (a pool block); its zero value is ready to
// use, so a freshly allocated, zeroed block needs no initialization.
//
// Sleeping uses shared futexes (package futex). A process that dies while
// holding a Mutex cannot unlock it, so a waiter that has slept for a while
// checks whether the holder is still alive and takes the lock over if not
// (one waiter wins: it swaps the dead pid for its own). LockRecover reports
// a take-over, so that the caller can repair what the dead holder left
// half-updated (gocore/channel does).
package shmsync

// Package runtime is a node's local services: the run's shared-memory pool,
// the objects that live in it, and the run's identity.
//
// A run is one program's set of processes. Its head calls Create, which makes
// the pool segment "dragon_mp.<id>.pool"; every other process of the run
// calls Attach with the same id. Objects (channels, semaphores) are named by
// an Address that holds the node index, the object's generation and its pool
// offset, so the same value names the same object in every process and, once
// routed, on every node, and never a later object at the same offset (see
// Address).
//
// Sync objects (semaphores) sit behind a small header {magic, kind, refs}
// that makes a stale or forged address an error instead of a crash, and
// counts references across processes; channels carry their own.
//
// Lock order: Runtime.mu → pool mutex; Runtime.mu is never held while
// blocking on a channel or semaphore.
package runtime

/* dragon_mp.h -- the C API of dragon_mp: queues and locks of a dragon_mp run, from C.
 *
 * A C program started inside a dragon_mp run (by a dragon_mp process, so that it inherits the run's
 * environment: DRAGON_MP_RUN, DRAGON_MP_SHM_DIR...) attaches to the run, opens a Queue or a Lock that a
 * Python process made, from the descriptor string Python gives it (q.descriptor(), lock.descriptor(),
 * passed in argv or the environment), and sends and receives raw bytes that Python reads with
 * q.get_bytes() and writes with q.put_bytes(b). The library is the Go core of dragon_mp built as a C
 * shared library (libdragon_mp.so); `python -m dragon_mp.capi --cflags --libs` prints how to build
 * against it. docs/c_api.md has a complete program.
 *
 * Scope: one node. The C program must run on the node whose pool holds the object (objects of other
 * nodes are refused with DMP_EREMOTE).
 *
 * Errors: every int function returns DMP_OK (0) or a negative DMP_E* code; dmp_strerror(code) names the
 * code, dmp_last_error() describes the calling thread's last failure in more detail.
 * Timeouts are in nanoseconds: negative waits forever, 0 never waits.
 * Thread safety: every function may be called from any thread; a handle may be used by several
 * threads at once, but must not be closed while another thread uses it.
 */
#ifndef DRAGON_MP_H
#define DRAGON_MP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes. */
#define DMP_OK             0
#define DMP_ETIMEOUT     (-1)   /* the timeout elapsed (recv: the queue stayed empty; lock: still held) */
#define DMP_EFULL        (-2)   /* send: a bounded queue stayed full until the timeout */
#define DMP_ECLOSED      (-3)   /* the queue was closed */
#define DMP_EBADDESC     (-4)   /* a malformed descriptor, one of another run or kind, or an object gone */
#define DMP_ENOTATTACHED (-5)   /* dmp_attach has not been called (or failed), or dmp_detach was */
#define DMP_ENOSPACE     (-6)   /* the run's shared memory is full (/dev/shm or the pool's reservation) */
#define DMP_ETOOLARGE    (-7)   /* a message larger than the pool's reservation can ever hold */
#define DMP_EINVAL       (-8)   /* an invalid argument (a NULL pointer, an unknown handle) */
#define DMP_ERELEASE     (-9)   /* a lock or bounded semaphore released more times than acquired */
#define DMP_EREMOTE     (-10)   /* another node's object, and this process cannot reach other nodes (no agent) */
#define DMP_EOS         (-11)   /* an operating system error (see dmp_last_error) */
#define DMP_ENOMEM      (-12)   /* malloc failed */
#define DMP_EINTERNAL   (-13)   /* a bug in dragon_mp: please report dmp_last_error() */
#define DMP_ELOST       (-14)   /* the object's node is lost (its agent stopped answering, or the run ends) */

/* Handles: nonzero while open. */
typedef uint64_t dmp_queue_t;
typedef uint64_t dmp_lock_t;

/* Attach this process to the run named by the environment (DRAGON_MP_RUN): map its shared memory.
 * Call it once before anything else; a second call while attached does nothing and returns DMP_OK.
 * DMP_ENOTATTACHED when DRAGON_MP_RUN is not set, DMP_EOS when the run's pool cannot be opened. */
int dmp_attach(void);

/* Close every handle still open and leave the run. Optional at exit: when a process ends (or is
 * killed) the run gives back what it held. */
int dmp_detach(void);

/* Open the queue named by descriptor (Python: Queue.descriptor(), also SimpleQueue and JoinableQueue).
 * Takes one reference to the queue, so it lives at least until dmp_queue_close; the Python side must
 * keep its Queue until this call has returned. */
int dmp_queue_open(const char *descriptor, dmp_queue_t *q);

/* Drop the handle and its reference. */
int dmp_queue_close(dmp_queue_t q);

/* Send len bytes at buf as one message (len may be 0; buf may then be NULL). Waits at most timeout_ns
 * while a bounded queue is full (DMP_EFULL when the time runs out); an unbounded queue never waits.
 * The bytes are copied once; buf is the caller's again when this returns. */
int dmp_queue_send(dmp_queue_t q, const void *buf, size_t len, int64_t timeout_ns);

/* Take the next message, waiting at most timeout_ns while the queue is empty (DMP_ETIMEOUT).
 * On DMP_OK, *buf is a malloc'ed copy of its *len bytes (never NULL, also for 0 bytes): free it
 * with dmp_free. On error *buf is NULL and *len 0. */
int dmp_queue_recv(dmp_queue_t q, void **buf, size_t *len, int64_t timeout_ns);

/* How many messages are queued (a snapshot). */
int dmp_queue_len(dmp_queue_t q, size_t *n);

/* Free a buffer returned by dmp_queue_recv (NULL is allowed). */
void dmp_free(void *buf);

/* Open the lock or semaphore named by descriptor (Python: Lock.descriptor(), Semaphore.descriptor(),
 * BoundedSemaphore.descriptor(); not RLock). Takes one reference, as dmp_queue_open. */
int dmp_lock_open(const char *descriptor, dmp_lock_t *l);

/* Acquire (decrement), waiting at most timeout_ns: DMP_OK, or DMP_ETIMEOUT. */
int dmp_lock_acquire(dmp_lock_t l, int64_t timeout_ns);

/* Release (increment): DMP_OK, or DMP_ERELEASE past a Lock's or BoundedSemaphore's maximum. */
int dmp_lock_release(dmp_lock_t l);

/* Drop the handle and its reference (a lock held through it stays held: release it first). */
int dmp_lock_close(dmp_lock_t l);

/* A static description of a DMP_* code. */
const char *dmp_strerror(int code);

/* The calling thread's last error message ("" if none yet); valid until this thread's next call. */
const char *dmp_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* DRAGON_MP_H */

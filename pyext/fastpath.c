//go:build ignore

// Not part of the Go package pyext: cgo would compile every .c file of the
// package into the gopy library. setup.py builds this file as the CPython
// extension dragon_mp._fastpath.

/*
 * dragon_mp._fastpath: the data plane's calls into the Go core, without ctypes.
 *
 * The Go core's //export functions (the Go files in pyext/) live in the gopy
 * extension dragon_mp._gobind._gocore, which dragon_mp._core loads once per
 * process. This module does NOT link that library (a second copy would start
 * a second Go runtime): init(so_path) finds the already-loaded library with
 * dlopen(RTLD_NOLOAD) and resolves the functions with dlsym. It builds with
 * only a C compiler and the Python headers.
 *
 * Three layers, each usable alone:
 *   - thin calls returning the Go functions' codes: send, recv, sem_acquire,
 *     sem_release, last_error, pool_base, and bind() for any other //export
 *     function whose arguments are 64-bit integers;
 *   - put/get: pickling included, errors raised through configure()'s
 *     raise_for (queue.Empty, queue.Full, ValueError...);
 *   - objects with C methods, so that lock.acquire or q.put is one C call:
 *     Sem (acquire/release), RLock (acquire/release) and Event
 *     (set/clear/is_set/wait), whose steps that never wait are atomics on the
 *     shared words (no call into Go; keep them in sync with gocore/shmsync),
 *     and Chan (put/get/put_nowait/get_nowait/close), which sends and
 *     receives an inline message on a channel of this node's pool itself when
 *     uncontended (keep in sync with gocore/channel; see "channels in C").
 *
 * Calls that cannot wait (timeout 0, release) keep the GIL: a cgo call is far
 * cheaper than releasing and re-taking it. A call that may wait first polls
 * with the GIL held, then waits in slices of at most 100 ms with the GIL
 * released, running signal handlers between slices (Ctrl-C stays prompt, as
 * dragon_mp._shared.sliced does in Python). Copies of large payloads also run
 * without the GIL. In a forked child every call raises RuntimeError (the Go
 * runtime does not survive fork) instead of hanging.
 *
 * Adding a Go function: bind it from Python at run time,
 *     f = _fastpath.bind("dmp_event_wait", "ut", 0)
 * (a callable object; see bind's docstring), or, for a dedicated C function,
 * add a pointer and a line to SYMBOLS below.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef int64_t i64;
typedef uint64_t u64;

/* Error codes of pyext/codes.go (the functions return them negated). */
enum { CODE_TIMEOUT = 1, CODE_FULL = 2, CODE_TOOMANYRELEASES = 8, CODE_NOTOWNER = 9 };

#define WAIT_SLICE_NS 100000000LL     /* longest wait with the GIL released between signal checks */
#define NOGIL_COPY 65536              /* copies of at least this many bytes run without the GIL */
#define DEFAULT_INLINE_CAP 65536      /* recv's buffer when the caller gives no capacity */
#define PAYLOAD_MIN 65536             /* CPython's FRAME_SIZE_TARGET: payloads its pickler writes to the file */
#define MAX_ARGS 6                    /* most arguments a bound function may take */

#if defined(__GNUC__)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define UNLIKELY(x) (x)
#endif

/* ---- the Go functions, resolved by init() */

static i64 (*go_send)(u64 addr, const void *buf, u64 n, i64 timeout_ns);
static i64 (*go_recv)(u64 addr, void *buf, u64 cap, i64 timeout_ns, u64 *out_len, u64 *out_off);
static i64 (*go_release_msg)(u64 addr, u64 off, u64 n);
static u64 (*go_pool_base)(void);
static i64 (*go_sem_acquire)(u64 addr, i64 timeout_ns);
static i64 (*go_sem_release)(u64 addr);
static i64 (*go_last_error)(void *buf, u64 cap);

/* Optional (NULL when missing: the objects then go through Go for everything). */
static u64 (*go_sem_ptr)(u64 addr);        /* pyext/fast_exports.go */
static u64 (*go_rlock_ptr)(u64 addr);
static u64 (*go_event_ptr)(u64 addr);
static i64 (*go_rlock_acquire)(u64 addr, u64 owner, i64 timeout_ns);   /* pyext/sync_more.go */
static i64 (*go_rlock_release)(u64 addr, u64 owner);
static i64 (*go_event_wait)(u64 addr, i64 timeout_ns);
static i64 (*go_event_set)(u64 addr);                                  /* pyext/fast_exports.go */
static i64 (*go_event_clear)(u64 addr);
static i64 (*go_event_is_set)(u64 addr);
static i64 (*go_sendv)(u64 addr, const void *const *bufs, const u64 *lens, u64 nparts,
                       i64 timeout_ns);                                /* pyext/sendv.go */
static i64 (*go_msg_alloc)(u64 addr, u64 n, i64 timeout_ns, u64 *out_off);
static i64 (*go_send_block)(u64 addr, u64 off, u64 n, i64 timeout_ns);
static u64 (*go_chan_ptr)(u64 addr);                    /* pyext/fast_exports.go */
static u64 (*go_chan_tag)(u64 addr);
static u64 (*go_chan_layout)(u64 *out, u64 n);
static u64 (*go_object_tag)(u64 addr);
static u64 (*go_object_tag_offset)(void);

static const struct {
    const char *name;
    void **slot;
} OPTIONAL_SYMBOLS[] = {
    {"dmp_sem_ptr", (void **)&go_sem_ptr},
    {"dmp_rlock_ptr", (void **)&go_rlock_ptr},
    {"dmp_event_ptr", (void **)&go_event_ptr},
    {"dmp_rlock_acquire", (void **)&go_rlock_acquire},
    {"dmp_rlock_release", (void **)&go_rlock_release},
    {"dmp_event_wait", (void **)&go_event_wait},
    {"dmp_event_set", (void **)&go_event_set},
    {"dmp_event_clear", (void **)&go_event_clear},
    {"dmp_event_is_set", (void **)&go_event_is_set},
    {"dmp_sendv", (void **)&go_sendv},
    {"dmp_msg_alloc", (void **)&go_msg_alloc},
    {"dmp_send_block", (void **)&go_send_block},
    {"dmp_chan_ptr", (void **)&go_chan_ptr},
    {"dmp_chan_tag", (void **)&go_chan_tag},
    {"dmp_chan_layout", (void **)&go_chan_layout},
    {"dmp_object_tag", (void **)&go_object_tag},
    {"dmp_object_tag_offset", (void **)&go_object_tag_offset},
};
#define NOPTIONAL (sizeof OPTIONAL_SYMBOLS / sizeof OPTIONAL_SYMBOLS[0])

static const struct {
    const char *name;
    void **slot;
} SYMBOLS[] = {
    {"dmp_send", (void **)&go_send},
    {"dmp_recv", (void **)&go_recv},
    {"dmp_release_msg", (void **)&go_release_msg},
    {"dmp_pool_base", (void **)&go_pool_base},
    {"dmp_sem_acquire", (void **)&go_sem_acquire},
    {"dmp_sem_release", (void **)&go_sem_release},
    {"dmp_last_error", (void **)&go_last_error},
};
#define NSYMBOLS (sizeof SYMBOLS / sizeof SYMBOLS[0])

static void chan_direct_setup(void);   /* channels in C: checks the layout */

static void *lib_handle;          /* the gopy library, from dlopen(RTLD_NOLOAD) */
static pid_t init_pid;

/* 0 ready; otherwise why calls are refused. Set by init() and in a forked child. */
enum { ST_READY = 0, ST_UNINIT = 1, ST_FORKED = 2 };
static volatile int state = ST_UNINIT;

static volatile unsigned fork_gen;   /* bumped in a forked child: thread identities change */

static void after_fork_in_child(void)
{
    fork_gen++;
    if (state == ST_READY)
        state = ST_FORKED;
}

/* NULL with the exception explaining why calls are refused. */
static PyObject *not_ready(void)
{
    if (state == ST_FORKED)
        PyErr_Format(PyExc_RuntimeError,
                     "dragon_mp: this process was forked from one that had already loaded the "
                     "dragon_mp runtime (pid %d); the Go runtime does not survive fork(). "
                     "Start processes with dragon_mp.Process or a stdlib 'spawn' context, or "
                     "fork before the first use of dragon_mp.", (int)init_pid);
    else
        PyErr_SetString(PyExc_RuntimeError, "dragon_mp._fastpath: init() has not been called");
    return NULL;
}

#define CHECK_READY()                  \
    do {                               \
        if (UNLIKELY(state != ST_READY)) \
            return not_ready();        \
    } while (0)

/* ---- argument conversion */

static int as_u64(PyObject *o, u64 *out)
{
    u64 v = PyLong_AsUnsignedLongLong(o);
    if (v == (u64)-1 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

static int as_i64(PyObject *o, i64 *out)
{
    i64 v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

static int check_nargs(const char *fname, Py_ssize_t nargs, Py_ssize_t lo, Py_ssize_t hi)
{
    if (UNLIKELY(nargs < lo || nargs > hi)) {
        if (lo == hi)
            PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", fname, lo, nargs);
        else
            PyErr_Format(PyExc_TypeError, "%s() takes %zd to %zd arguments (%zd given)", fname, lo,
                         hi, nargs);
        return -1;
    }
    return 0;
}

/* ---- waiting in slices */

static i64 now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (i64)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* This process's node in a multi-node run (0 on one node); read at init. */
static u64 local_node;

/* Whether addr names another node's object (address bits 63..48 are its
 * node). A call on one is a network round trip (or, when that node was
 * just cut off, the seconds it takes to notice), so it never holds the
 * GIL: other threads must go on, and Ctrl-C must be served. */
static inline int is_remote(u64 addr)
{
    return (addr >> 48) != local_node;
}

/* rc = call, with the GIL released when addr is another node's. */
#define GO_CALL(addr, rc, call)                 \
    do {                                        \
        if (is_remote(addr)) {                  \
            Py_BEGIN_ALLOW_THREADS              \
            rc = (call);                        \
            Py_END_ALLOW_THREADS                \
        } else {                                \
            rc = (call);                        \
        }                                       \
    } while (0)

/* One attempt of a call with the given timeout (ns; 0 = do not wait). */
typedef i64 (*attempt_fn)(void *ctx, i64 timeout_ns);

/*
 * Call attempt on the object at addr until it returns something other than
 * `timed_out`, waiting at most total_ns in all (<0 forever, 0 one poll).
 * The first attempt polls; it keeps the GIL when `gil_poll` (a cheap call)
 * and addr is this node's, the later ones wait in slices of at most
 * WAIT_SLICE_NS with the GIL released and run the signal handlers between
 * slices. Returns the last rc; sets *raised (and returns 0) when a signal
 * handler raised.
 */
static i64 sliced(attempt_fn attempt, void *ctx, u64 addr, i64 total_ns, i64 timed_out,
                  int gil_poll, int *raised)
{
    i64 rc;
    *raised = 0;
    if (gil_poll && !is_remote(addr)) {
        rc = attempt(ctx, 0);
    } else {
        Py_BEGIN_ALLOW_THREADS
        rc = attempt(ctx, 0);
        Py_END_ALLOW_THREADS
    }
    if (rc != timed_out || total_ns == 0)
        return rc;
    i64 deadline = total_ns < 0 ? -1 : now_ns() + total_ns;
    for (;;) {
        i64 slice = WAIT_SLICE_NS;
        if (deadline >= 0) {
            i64 left = deadline - now_ns();
            if (left <= 0)
                return rc;
            if (left < slice)
                slice = left;
        }
        Py_BEGIN_ALLOW_THREADS
        rc = attempt(ctx, slice);
        Py_END_ALLOW_THREADS
        if (rc != timed_out)
            return rc;
        if (PyErr_CheckSignals() < 0) {
            *raised = 1;
            return 0;
        }
    }
}

/* ---- shared words */

#define FUTEX_WAKE_SHARED 1      /* FUTEX_WAKE without FUTEX_PRIVATE_FLAG: the word is shared */
#define FUTEX_WAKE_ALL 0x7fffffff

#include <sys/syscall.h>
#include <linux/futex.h>

static u64 epoch;                /* bumped by invalidate() */

#define LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define CAS(p, expected, desired) \
    __atomic_compare_exchange_n((p), (expected), (desired), 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)

static inline void futex_wake(uint32_t *w, int n)
{
    syscall(SYS_futex, w, FUTEX_WAKE_SHARED, n, NULL, NULL, 0);
}

/* ---- per-thread receive buffer for inline messages */

static pthread_key_t buf_key;

typedef struct {
    size_t cap;
    char data[];
} tbuf;

/* This thread's buffer of at least cap bytes (NULL: out of memory). Needs no GIL.
 * Growing it frees the old one: callers fetch it again for every attempt, since
 * a signal handler run between two slices of a wait may recv on this thread. */
static char *thread_buffer(size_t cap)
{
    tbuf *b = pthread_getspecific(buf_key);
    if (UNLIKELY(b == NULL || b->cap < cap)) {
        if (cap < 4096)
            cap = 4096;
        tbuf *nb = malloc(sizeof(tbuf) + cap);
        if (nb == NULL)
            return NULL;
        nb->cap = cap;
        free(b);
        pthread_setspecific(buf_key, nb);
        b = nb;
    }
    return b->data;
}

/* ---- init */

PyDoc_STRVAR(init_doc,
"init(so_path)\n--\n\n"
"Resolve the Go functions in the ALREADY LOADED gopy library at so_path (the\n"
"path dragon_mp._gobind.load() returns). Never loads it: raises OSError if it is\n"
"not loaded, AttributeError if a required function is missing. Idempotent.");

static PyObject *fp_init(PyObject *mod, PyObject *arg)
{
    PyObject *bytes = NULL;
    if (!PyUnicode_FSConverter(arg, &bytes))
        return NULL;
    if (state == ST_FORKED) {
        Py_DECREF(bytes);
        return not_ready();
    }
    void *h = dlopen(PyBytes_AS_STRING(bytes), RTLD_NOW | RTLD_NOLOAD);
    if (h == NULL) {
        const char *err = dlerror();
        PyErr_Format(PyExc_OSError, "dragon_mp._fastpath: %s is not loaded (%s)",
                     PyBytes_AS_STRING(bytes), err ? err : "dlopen failed");
        Py_DECREF(bytes);
        return NULL;
    }
    void *found[NSYMBOLS];
    for (size_t i = 0; i < NSYMBOLS; i++) {
        found[i] = dlsym(h, SYMBOLS[i].name);
        if (found[i] == NULL) {
            PyErr_Format(PyExc_AttributeError, "dragon_mp._fastpath: %s has no function %s",
                         PyBytes_AS_STRING(bytes), SYMBOLS[i].name);
            dlclose(h);
            Py_DECREF(bytes);
            return NULL;
        }
    }
    Py_DECREF(bytes);
    if (lib_handle != NULL) {
        if (lib_handle != h) {
            dlclose(h);
            PyErr_SetString(PyExc_RuntimeError,
                            "dragon_mp._fastpath: init() was already called with another library");
            return NULL;
        }
        dlclose(h); /* keep one reference */
        Py_RETURN_NONE;
    }
    for (size_t i = 0; i < NSYMBOLS; i++)
        *SYMBOLS[i].slot = found[i];
    for (size_t i = 0; i < NOPTIONAL; i++)
        *OPTIONAL_SYMBOLS[i].slot = dlsym(h, OPTIONAL_SYMBOLS[i].name);
    lib_handle = h;
    {
        const char *node = getenv("DRAGON_MP_NODE");
        local_node = node ? (u64)strtoul(node, NULL, 10) & 0xffffu : 0;
    }
    init_pid = getpid();
    chan_direct_setup();
    state = ST_READY;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(ready_doc, "ready()\n--\n\nWhether init() succeeded (and this is not a forked child).");

static PyObject *fp_ready(PyObject *mod, PyObject *unused)
{
    return PyBool_FromLong(state == ST_READY);
}

/* ---- channels in C: the uncontended send and receive of an inline message */

/*
 * KEEP IN SYNC WITH gocore/channel/channel.go (header, putLocked, takeLocked,
 * newChunkLocked, retireChunkLocked, send, recv) and gocore/shmsync/mutex.go.
 *
 * A Chan (and the module-level send()/recv() that Connections use, through the
 * address cache below) whose channel lives in this process's pool (dmp_chan_ptr:
 * not another node's) sends and receives an INLINE message (payload <= the channel's inline
 * size) here, on the channel header, without calling Go, when nothing stands
 * in the way:
 *   lock:    one CAS of the mutex word 0 -> pid (shmsync.Mutex.TryLock); if it
 *            fails, nothing was touched and the call goes through Go, which
 *            spins, sleeps, and takes over a dead holder's lock;
 *   then:    magic still live (else unlock, Go reports the destroyed channel);
 *   send:    open, not full (capacity 0 or count < capacity), and a slot in the
 *            tail chunk, or the spare chunk to start a new tail with (the queue
 *            was empty, or the tail chunk is full: linked as its successor).
 *            Needing a new chunk without a spare (an allocation) goes through Go.
 *            Slot {len, flags 0, payload}, tailIdx++, count++, neSeq++ (atomic),
 *            read neWaiters before unlocking;
 *   recv:    count > 0 and the head slot is inline and fits the caller's buffer,
 *            and retiring the head chunk (the queue becomes empty, or its last
 *            slot was read) keeps it as the spare (spare == 0); a retirement that
 *            would free a chunk goes through Go. Copy out, headIdx++ (or the
 *            retirement: empty -> head = tail = 0 with both indices; last slot ->
 *            head = chunk's next), count-- , nfSeq++ (atomic), read nfWaiters
 *            (bounded channels only) before unlocking;
 *   unlock:  swap the word to 0; FUTEX_WAKE(word, 1) when bit 31 (contended) was
 *            set, as shmsync.Mutex.Unlock;
 *   wake:    FUTEX_WAKE(neSeq or nfSeq, 1) only when the waiter count read under
 *            the lock was non-zero, as Go's send/recv.
 * Everything else goes through Go (dmp_send/dmp_recv): large messages (and
 * inline ones of NOGIL_COPY bytes or more: copied without the GIL), closed,
 * full or empty channels (waiting, errors), chunk allocation and freeing,
 * contention, another node's channels. C and Go may act on one channel at the
 * same time, from any processes: they share the mutex and these steps.
 *
 * The layout below is checked at init() against channel.Layout (dmp_chan_layout):
 * on any difference, or without those exports, every Chan goes through Go.
 * DRAGON_MP_FASTCHAN=0 in the environment at init() does the same.
 */

typedef struct {
    u64 magic;              /* +0   */
    uint32_t version;       /* +8   */
    uint32_t mu;            /* +12  shmsync.Mutex: 0 free, else pid | bit 31 contended */
    u64 capacity;           /* +16  0 = unbounded */
    u64 count;              /* +24  atomic */
    uint32_t inline_;       /* +32  */
    uint32_t slot_size;     /* +36  */
    uint32_t chunk_slots;   /* +40  */
    uint32_t closed;        /* +44  atomic */
    uint32_t ne_seq;        /* +48  atomic */
    uint32_t ne_waiters;    /* +52  atomic */
    uint32_t nf_seq;        /* +56  atomic */
    uint32_t nf_waiters;    /* +60  atomic */
    u64 refs;               /* +64  */
    u64 head;               /* +72  */
    u64 head_idx;           /* +80  */
    u64 tail;               /* +88  */
    u64 tail_idx;           /* +96  */
    u64 spare;              /* +104 */
    u64 chunks;             /* +112 */
    u64 tag;                /* +120 channel.Options.Tag: tells reuses of the memory apart */
} chan_hdr;

#define CHAN_CHUNK_HEADER 64
#define CHAN_SLOT_HEADER 16
#define CHAN_FLAG_LARGE 1u
#define CHAN_MAGIC 0x314e4148435f4d44ULL   /* "DM_CHAN1" */
#define CHAN_VERSION 1
#define MUTEX_CONTENDED 0x80000000u

/* channel.Layout's words, in the order of its Layout* constants. */
static const u64 CHAN_LAYOUT[] = {
    sizeof(chan_hdr), CHAN_CHUNK_HEADER, CHAN_SLOT_HEADER, CHAN_FLAG_LARGE, CHAN_MAGIC, CHAN_VERSION,
    offsetof(chan_hdr, magic), offsetof(chan_hdr, version), offsetof(chan_hdr, mu),
    offsetof(chan_hdr, capacity), offsetof(chan_hdr, count), offsetof(chan_hdr, inline_),
    offsetof(chan_hdr, slot_size), offsetof(chan_hdr, chunk_slots), offsetof(chan_hdr, closed),
    offsetof(chan_hdr, ne_seq), offsetof(chan_hdr, ne_waiters), offsetof(chan_hdr, nf_seq),
    offsetof(chan_hdr, nf_waiters), offsetof(chan_hdr, head), offsetof(chan_hdr, head_idx),
    offsetof(chan_hdr, tail), offsetof(chan_hdr, tail_idx), offsetof(chan_hdr, spare),
    MUTEX_CONTENDED, offsetof(chan_hdr, tag),
};
#define CHAN_LAYOUT_WORDS (sizeof CHAN_LAYOUT / sizeof CHAN_LAYOUT[0])

static int chan_direct_ok;        /* layout checked, exports there, not disabled */
static u64 direct_stats[4];       /* sends, receives done here; sends, receives handed to Go (GIL held) */
static uint32_t lock_pid;         /* this process's mutex word (shmsync.Mutex: the pid) */

/* Set chan_direct_ok from the Go library's layout (at init()). */
static void chan_direct_setup(void)
{
    chan_direct_ok = 0;
    const char *env = getenv("DRAGON_MP_FASTCHAN");
    if (env != NULL && strcmp(env, "0") == 0)
        return;
    if (go_chan_ptr == NULL || go_chan_tag == NULL || go_chan_layout == NULL)
        return;
    u64 got[CHAN_LAYOUT_WORDS + 1];
    memset(got, 0, sizeof got);
    if (go_chan_layout(got, CHAN_LAYOUT_WORDS) != CHAN_LAYOUT_WORDS)
        return;
    for (size_t i = 0; i < CHAN_LAYOUT_WORDS; i++)
        if (got[i] != CHAN_LAYOUT[i])
            return;
    lock_pid = (uint32_t)getpid();
    if (lock_pid == 0 || (lock_pid & MUTEX_CONTENDED))
        return;
    chan_direct_ok = 1;
}

/* Where a Chan's channel lives in this process; hdr NULL: everything through Go. */
typedef struct {
    chan_hdr *hdr;
    char *base;                  /* the pool mapping: chunk offsets are relative to it */
    u64 epoch;
    u64 tag;                     /* the channel's tag (Go's handle's): another one in hdr is a reuse */
} chan_direct;

static void chan_direct_init(chan_direct *d, u64 addr)
{
    d->hdr = NULL;
    d->base = NULL;
    d->epoch = epoch;
    if (!chan_direct_ok || state != ST_READY)
        return;
    u64 p = go_chan_ptr(addr), base = go_pool_base(), tag = go_chan_tag(addr);
    /* The header is at the address's offset in the pool (runtime.Address:
     * bits 35..0 are the offset / 64). A handle whose tag is no longer the
     * header's (the channel's memory reused since) is stale: through Go,
     * which says so. */
    if (p == 0 || base == 0 || p % 8 != 0 || p - base != (addr & ((1ULL << 36) - 1)) << 6 ||
        LOAD(&((chan_hdr *)(uintptr_t)p)->tag) != tag)
        return;
    d->hdr = (chan_hdr *)(uintptr_t)p;
    d->base = (char *)(uintptr_t)base;
    d->tag = tag;
}

static inline chan_hdr *chan_direct_hdr(chan_direct *d)
{
    if (d == NULL)
        return NULL;
    if (UNLIKELY(d->hdr != NULL && d->epoch != epoch))
        d->hdr = NULL;
    return d->hdr;
}

/* shmsync.Mutex.TryLock */
static inline int chan_trylock(chan_hdr *h)
{
    uint32_t free_ = 0;
    return CAS(&h->mu, &free_, lock_pid);
}

/* shmsync.Mutex.Unlock */
static inline void chan_unlock(chan_hdr *h)
{
    if (__atomic_exchange_n(&h->mu, 0, __ATOMIC_SEQ_CST) & MUTEX_CONTENDED)
        futex_wake(&h->mu, 1);
}

static inline u64 *chunk_next(char *base, u64 chunk)
{
    return (u64 *)(base + chunk);
}

static inline char *chan_slot(char *base, chan_hdr *h, u64 chunk, u64 idx)
{
    return base + chunk + CHAN_CHUNK_HEADER + idx * (u64)h->slot_size;
}

/*
 * Send the n bytes at buf as one inline message. 1: sent; 0: not done here,
 * nothing changed (send through Go). Keeps the GIL: a few hundred ns at most.
 */
static int chan_try_send(chan_direct *d, const void *buf, u64 n)
{
    chan_hdr *h = chan_direct_hdr(d);
    if (h == NULL || n >= NOGIL_COPY)       /* a long copy: through Go, without the GIL */
        return 0;
    if (LOAD(&h->magic) != CHAN_MAGIC || n > h->inline_ || LOAD(&h->closed) != 0 || !chan_trylock(h)) {
        direct_stats[2]++;
        return 0;
    }
    char *base = d->base;
    int done = 0, wake = 0;
    if (LOAD(&h->magic) == CHAN_MAGIC && h->tag == d->tag && h->closed == 0 && n <= h->inline_ &&
        (h->capacity == 0 || h->count < h->capacity)) {
        u64 tail = h->tail, idx = h->tail_idx;
        int room = 1;
        if (tail == 0 || idx == h->chunk_slots) {
            /* newChunkLocked, spare only; the link as in putLocked */
            u64 sp = h->spare;
            if (sp == 0) {
                room = 0;
            } else {
                h->spare = 0;
                *chunk_next(base, sp) = 0;
                if (tail == 0) {
                    h->head = sp;
                    h->head_idx = 0;
                } else {
                    *chunk_next(base, tail) = sp;
                }
                h->tail = tail = sp;
                h->tail_idx = idx = 0;
            }
        }
        if (room) {
            char *s = chan_slot(base, h, tail, idx);
            *(u64 *)s = n;
            *(uint32_t *)(s + 8) = 0;
            memcpy(s + CHAN_SLOT_HEADER, buf, n);
            h->tail_idx = idx + 1;
            __atomic_add_fetch(&h->count, 1, __ATOMIC_SEQ_CST);
            __atomic_add_fetch(&h->ne_seq, 1, __ATOMIC_SEQ_CST);
            wake = LOAD(&h->ne_waiters) != 0;
            done = 1;
        }
    }
    chan_unlock(h);
    if (wake)
        futex_wake(&h->ne_seq, 1);
    direct_stats[done ? 0 : 2]++;
    return done;
}

/*
 * Take the next message if it is inline and fits dst (cap bytes). 1: copied,
 * length in *len; 0: not done here, nothing changed (receive through Go).
 */
static int chan_try_recv(chan_direct *d, char *dst, u64 cap, u64 *len)
{
    chan_hdr *h = chan_direct_hdr(d);
    if (h == NULL)
        return 0;
    if (LOAD(&h->magic) != CHAN_MAGIC || LOAD(&h->count) == 0 || !chan_trylock(h)) {
        direct_stats[3]++;
        return 0;
    }
    char *base = d->base;
    int done = 0, wake = 0;
    if (LOAD(&h->magic) == CHAN_MAGIC && h->tag == d->tag && h->count > 0) {
        u64 head = h->head, idx = h->head_idx;
        char *s = chan_slot(base, h, head, idx);
        u64 n = *(u64 *)s;
        uint32_t flags = *(uint32_t *)(s + 8);
        u64 left = h->count - 1;
        int retire = left == 0 || idx + 1 == h->chunk_slots;
        if (!(flags & CHAN_FLAG_LARGE) && n <= h->inline_ && n <= cap && n < NOGIL_COPY &&
            (!retire || h->spare == 0)) {
            memcpy(dst, s + CHAN_SLOT_HEADER, n);
            if (left == 0) {
                /* empty: the only chunk becomes the spare */
                h->spare = head;
                h->head = h->head_idx = h->tail = h->tail_idx = 0;
            } else if (retire) {
                u64 next = *chunk_next(base, head);
                h->spare = head;
                h->head = next;
                h->head_idx = 0;
            } else {
                h->head_idx = idx + 1;
            }
            __atomic_sub_fetch(&h->count, 1, __ATOMIC_SEQ_CST);
            __atomic_add_fetch(&h->nf_seq, 1, __ATOMIC_SEQ_CST);
            wake = h->capacity != 0 && LOAD(&h->nf_waiters) != 0;
            *len = n;
            done = 1;
        }
    }
    chan_unlock(h);
    if (wake)
        futex_wake(&h->nf_seq, 1);
    direct_stats[done ? 1 : 3]++;
    return done;
}

/*
 * The module-level send()/recv() (Connections) take an address: a small cache,
 * used with the GIL held, maps it to where its channel lives (one dmp_chan_ptr
 * call per miss; not a local channel: cached as "through Go"). An entry may
 * outlive its channel: C reads every parameter from the header, checks the magic
 * before touching the mutex and again under it, and a channel made later at the
 * same offset is the one the address names. invalidate() empties it (epoch).
 */
#define DIRECT_CACHE 64

static struct {
    u64 addr;
    chan_direct d;
} direct_cache[DIRECT_CACHE];

static chan_direct *direct_for(u64 addr)
{
    if (!chan_direct_ok || addr == 0)
        return NULL;
    size_t i = (size_t)((addr >> 6) ^ (addr >> 48)) % DIRECT_CACHE;   /* headers: 64-byte aligned */
    if (direct_cache[i].addr != addr || direct_cache[i].d.epoch != epoch) {
        chan_direct_init(&direct_cache[i].d, addr);
        direct_cache[i].addr = addr;
    }
    return chan_direct_hdr(&direct_cache[i].d) != NULL ? &direct_cache[i].d : NULL;
}

/* ---- channels */

typedef struct {
    u64 addr;
    const void *buf;
    u64 n;
} send_ctx;

static i64 send_attempt(void *p, i64 timeout)
{
    send_ctx *c = p;
    return go_send(c->addr, c->buf, c->n, timeout);
}

/*
 * Large messages are copied into the pool here, with libc's memcpy, not by Go:
 * Go's memmove switches to non-temporal stores at 1 MiB, which write the
 * message around the cache, so a receiver on another core reads a message that
 * would have fit in the cache from memory (1 MiB Queue bandwidth: ~27% of
 * memcpy through Go's copy). dmp_msg_alloc reserves the block, the payload is
 * copied without the GIL, dmp_send_block queues it.
 */
#define BLOCK_COPY 65536                /* messages of at least this size take that path */
#define RC_NOBLOCK (INT64_MIN + 1)      /* send_block_parts: no block here, send another way */

typedef struct {
    u64 addr, off, n;
} block_ctx;

static i64 send_block_attempt(void *p, i64 timeout)
{
    block_ctx *c = p;
    return go_send_block(c->addr, c->off, c->n, timeout);
}

/*
 * Send the concatenation of nparts buffers as one message through a pool block
 * filled here. Returns the last dmp_send_block code (0: sent; -FULL: a bounded
 * channel stayed full, or was full for a timeout of 0: nothing copied), or RC_NOBLOCK when no block could be reserved (not a
 * local channel, closed, pool full...: the caller sends through Go, which
 * reports the error). *raised as in sliced(). The caller keeps the buffers alive
 * and unchanged (they are read without the GIL).
 */
static i64 send_block_parts(u64 addr, const void *const *bufs, const u64 *lens, int nparts,
                            i64 timeout, int *raised)
{
    *raised = 0;
    if (go_msg_alloc == NULL || go_send_block == NULL)
        return RC_NOBLOCK;
    u64 total = 0, off = 0;
    for (int i = 0; i < nparts; i++)
        total += lens[i];
    i64 rc = go_msg_alloc(addr, total, timeout, &off);
    if (rc == -CODE_FULL)
        return rc;                              /* full and no waiting: spare the copy */
    if (rc != 0)
        return RC_NOBLOCK;
    char *dst = (char *)(uintptr_t)(go_pool_base() + off);
    Py_BEGIN_ALLOW_THREADS
    for (int i = 0; i < nparts; i++) {
        memcpy(dst, bufs[i], lens[i]);
        dst += lens[i];
    }
    Py_END_ALLOW_THREADS
    block_ctx c = {addr, off, total};
    rc = sliced(send_block_attempt, &c, c.addr, timeout, -CODE_FULL, 1, raised);
    if (*raised || rc != 0)
        go_release_msg(addr, off, total);      /* not queued: still ours */
    return rc;
}

PyDoc_STRVAR(send_doc,
"send(addr, data, timeout_ns) -> int\n--\n\n"
"Copy the bytes-like data (zero-copy from the caller's buffer) into the channel\n"
"at addr. timeout_ns: <0 forever, 0 do not wait. Returns 0, or -FULL (-2) when a\n"
"bounded channel stayed full (that is how dmp_send reports a timeout), or another\n"
"negative code.");

static PyObject *fp_send(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    CHECK_READY();
    if (check_nargs("send", nargs, 3, 3) < 0)
        return NULL;
    send_ctx c;
    i64 timeout;
    if (as_u64(args[0], &c.addr) < 0 || as_i64(args[2], &timeout) < 0)
        return NULL;
    PyObject *data = args[1];
    Py_buffer view;
    int have_view = 0;
    if (PyBytes_CheckExact(data)) {
        c.buf = PyBytes_AS_STRING(data);
        c.n = (u64)PyBytes_GET_SIZE(data);
    } else {
        if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
            return NULL;
        have_view = 1;
        c.buf = view.buf;
        c.n = (u64)view.len;
    }
    int raised = 0;
    i64 rc = RC_NOBLOCK;
    if (c.n < NOGIL_COPY && chan_try_send(direct_for(c.addr), c.buf, c.n))
        rc = 0;
    else if (c.n >= BLOCK_COPY)
        rc = send_block_parts(c.addr, &c.buf, &c.n, 1, timeout, &raised);
    /* A large payload is copied into the pool before Go looks at the channel: no GIL. */
    if (rc == RC_NOBLOCK)
        rc = sliced(send_attempt, &c, c.addr, timeout, -CODE_FULL, c.n < NOGIL_COPY, &raised);
    if (have_view)
        PyBuffer_Release(&view);
    if (raised)
        return NULL;
    return PyLong_FromLongLong(rc);
}

typedef struct {
    u64 addr;
    char *buf;
    u64 cap;
    u64 len, off;
} recv_ctx;

#define RC_NOMEM INT64_MIN      /* recv_attempt: no receive buffer */

static i64 recv_attempt(void *p, i64 timeout)
{
    recv_ctx *c = p;
    c->buf = thread_buffer(c->cap);
    if (c->buf == NULL)
        return RC_NOMEM;
    return go_recv(c->addr, c->buf, c->cap, timeout, &c->len, &c->off);
}

/*
 * Large results and glibc: a bytes object of many MiB comes from mmap until
 * glibc has freed one that size, and then from the heap, whose top glibc
 * gives back to the kernel once more than twice that size is free (mallopt(3):
 * the thresholds follow the largest mmapped block freed). A receiver holding
 * two such results at a time (the previous one still referenced) frees both
 * at the end of a batch, so the next batch faults twice the size of fresh
 * zeroed pages in again (16 MiB messages in batches of 22: ~370 faults per
 * message, a third of the bandwidth). Before the first result of
 * MALLOC_PRIME_MIN bytes or more, this process frees one block of twice that
 * size (untouched, so only an mmap/munmap): glibc then keeps up to four
 * results' worth of freed heap instead of two, as if the program had used a
 * buffer that large once. Up to glibc's ceiling for the rule (32 MiB).
 */
#define MALLOC_PRIME_MIN (4u << 20)
#define MALLOC_PRIME_MAX ((32u << 20) - (64u << 10))

static void prime_malloc(u64 n)
{
    static u64 primed;           /* the largest block freed so far (GIL held) */
    if (n < MALLOC_PRIME_MIN || n <= primed)
        return;
    u64 block = n * 2 < MALLOC_PRIME_MAX ? n * 2 : MALLOC_PRIME_MAX;
    if (block <= primed)
        return;
    primed = block;
    void *volatile p = malloc(block);   /* volatile: the pair must not be optimised away */
    free(p);
}

/*
 * bytes of the n bytes at byte skip of the large message of len bytes at pool
 * offset off, then the message is freed; NULL on MemoryError (still freed).
 */
static PyObject *take_large_at(u64 addr, u64 off, u64 len, u64 skip, u64 n)
{
    prime_malloc(n);
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n);
    if (out != NULL) {
        const char *src = (const char *)(uintptr_t)(go_pool_base() + off + skip);
        char *dst = PyBytes_AS_STRING(out);
        if (n >= NOGIL_COPY) {
            Py_BEGIN_ALLOW_THREADS
            memcpy(dst, src, n);
            go_release_msg(addr, off, len);
            Py_END_ALLOW_THREADS
            return out;
        }
        memcpy(dst, src, n);
    }
    go_release_msg(addr, off, len);
    return out;
}

/* bytes of a large message at pool offset off, then freed; NULL on MemoryError (still freed). */
static PyObject *take_large(u64 addr, u64 off, u64 len)
{
    return take_large_at(addr, off, len, 0, len);
}

PyDoc_STRVAR(recv_doc,
"recv(addr, timeout_ns, inline_cap=65536) -> bytes | int\n--\n\n"
"Take the next message of the channel at addr: its bytes, or a negative code\n"
"(-TIMEOUT (-1) when none came in time). timeout_ns: <0 forever, 0 do not wait.\n"
"inline_cap must be >= the channel's inline size (ChannelInline; 256 by default):\n"
"an inline message that does not fit stays queued and the call returns a negative\n"
"code.");

static PyObject *fp_recv(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    CHECK_READY();
    if (check_nargs("recv", nargs, 2, 3) < 0)
        return NULL;
    recv_ctx c;
    i64 timeout, cap = DEFAULT_INLINE_CAP;
    if (as_u64(args[0], &c.addr) < 0 || as_i64(args[1], &timeout) < 0)
        return NULL;
    if (nargs > 2) {
        if (as_i64(args[2], &cap) < 0)
            return NULL;
        if (cap < 0) {
            PyErr_SetString(PyExc_ValueError, "recv(): negative inline_cap");
            return NULL;
        }
    }
    c.cap = (u64)cap;
    c.len = c.off = 0;
    i64 rc;
    chan_direct *d = direct_for(c.addr);
    if (d != NULL && (c.buf = thread_buffer(c.cap)) != NULL && chan_try_recv(d, c.buf, c.cap, &c.len)) {
        rc = 0;
    } else {
        int raised;
        rc = sliced(recv_attempt, &c, c.addr, timeout, -CODE_TIMEOUT, 1, &raised);
        if (raised)
            return NULL;
    }
    if (rc == RC_NOMEM)
        return PyErr_NoMemory();
    if (rc == 0)
        return PyBytes_FromStringAndSize(c.buf, (Py_ssize_t)c.len);
    if (rc == 1)
        return take_large(c.addr, c.off, c.len);
    return PyLong_FromLongLong(rc);
}

/* ---- semaphores */

typedef struct {
    u64 addr;
} addr_ctx;

static i64 sem_acquire_attempt(void *p, i64 timeout)
{
    return go_sem_acquire(((addr_ctx *)p)->addr, timeout);
}

PyDoc_STRVAR(sem_acquire_doc,
"sem_acquire(addr, timeout_ns) -> int\n--\n\n"
"1 acquired, 0 timed out, <0 error. timeout_ns: <0 forever, 0 do not wait.");

static PyObject *fp_sem_acquire(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    CHECK_READY();
    if (check_nargs("sem_acquire", nargs, 2, 2) < 0)
        return NULL;
    addr_ctx c;
    i64 timeout;
    if (as_u64(args[0], &c.addr) < 0 || as_i64(args[1], &timeout) < 0)
        return NULL;
    i64 rc;
    if (timeout == 0) {
        GO_CALL(c.addr, rc, go_sem_acquire(c.addr, 0));
    } else {
        int raised;
        rc = sliced(sem_acquire_attempt, &c, c.addr, timeout, 0, 1, &raised);
        if (raised)
            return NULL;
    }
    return PyLong_FromLongLong(rc);
}

PyDoc_STRVAR(sem_release_doc, "sem_release(addr) -> int\n--\n\n0, or <0 error (-TOOMANYRELEASES...).");

static PyObject *fp_sem_release(PyObject *mod, PyObject *arg)
{
    CHECK_READY();
    u64 addr;
    if (as_u64(arg, &addr) < 0)
        return NULL;
    i64 rc;
    GO_CALL(addr, rc, go_sem_release(addr));
    return PyLong_FromLongLong(rc);
}

/* ---- misc */

PyDoc_STRVAR(last_error_doc, "last_error() -> str\n--\n\nThe message of the last failed data-plane call (dmp_last_error).");

static PyObject *fp_last_error(PyObject *mod, PyObject *unused)
{
    CHECK_READY();
    char buf[4096];
    i64 n = go_last_error(buf, sizeof buf);
    if (n < 0)
        n = 0;
    return PyUnicode_DecodeUTF8(buf, (Py_ssize_t)n, "replace");
}

PyDoc_STRVAR(pool_base_doc, "pool_base() -> int\n--\n\nAddress of this process's mapping of the run's pool (0: none).");

static PyObject *fp_pool_base(PyObject *mod, PyObject *unused)
{
    CHECK_READY();
    return PyLong_FromUnsignedLongLong(go_pool_base());
}

/* ---- errors and pickling: configure() */

static PyObject *cfg_raise;       /* callable(rc) raising the exception for a negative rc */
static PyObject *cfg_dumps_parts; /* callable(obj) -> list of bytes-like: the general pickler, to parts */
static PyObject *cfg_loads;       /* callable(bytes-like) -> obj */
static PyObject *plain_dumps;     /* pickle.dumps, for objects that need no reducer */
static PyObject *plain_protocol;  /* pickle.HIGHEST_PROTOCOL */
static void pad_setup(void);
static void wrap_raw_allocator(void);

PyDoc_STRVAR(configure_doc,
"configure(raise_for, dumps_parts, loads)\n--\n\n"
"raise_for(rc): raises the Python exception for a negative rc (dragon_mp._core.raise_for);\n"
"dumps_parts(obj) -> list: the pickler of put() (ForkingPickler, protocol 5, writing a\n"
"list of parts: dragon_mp.reduction.dumps_parts), used for every object but small plain\n"
"ones (None, bool, int, float, str, bytes, bytearray, and tuples, lists, dicts of them,\n"
"up to 256 objects, no bytes-like of 64 KiB or more), which pickle.dumps handles\n"
"identically (the pickler consults no reducer table for them) and faster;\n"
"loads(bytes) -> obj: the unpickler of get() (pickle.loads).");

static PyObject *fp_configure(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (check_nargs("configure", nargs, 3, 3) < 0)
        return NULL;
    for (int i = 0; i < 3; i++) {
        if (!PyCallable_Check(args[i])) {
            PyErr_SetString(PyExc_TypeError, "configure(): arguments must be callable");
            return NULL;
        }
    }
    if (plain_dumps == NULL) {
        PyObject *pickle = PyImport_ImportModule("pickle");
        if (pickle == NULL)
            return NULL;
        plain_dumps = PyObject_GetAttrString(pickle, "dumps");
        plain_protocol = PyObject_GetAttrString(pickle, "HIGHEST_PROTOCOL");
        Py_DECREF(pickle);
        if (plain_dumps == NULL || plain_protocol == NULL) {
            Py_CLEAR(plain_dumps);
            Py_CLEAR(plain_protocol);
            return NULL;
        }
    }
    Py_INCREF(args[0]);
    Py_XSETREF(cfg_raise, args[0]);
    Py_INCREF(args[1]);
    Py_XSETREF(cfg_dumps_parts, args[1]);
    pad_setup();
    wrap_raw_allocator();
    Py_INCREF(args[2]);
    Py_XSETREF(cfg_loads, args[2]);
    Py_RETURN_NONE;
}

/* NULL with the exception for a negative rc set. */
static PyObject *raise_rc(i64 rc)
{
    if (cfg_raise != NULL) {
        PyObject *code = PyLong_FromLongLong(rc);
        if (code == NULL)
            return NULL;
        PyObject *r = PyObject_CallOneArg(cfg_raise, code);
        Py_DECREF(code);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    char buf[1024];
    i64 n = go_last_error(buf, sizeof buf);
    PyErr_Format(PyExc_RuntimeError, "dragon_mp: error code %lld: %.*s", (long long)rc,
                 (int)(n > 0 ? n : 0), buf);
    return NULL;
}

static int require_configured(void)
{
    if (UNLIKELY(cfg_dumps_parts == NULL)) {
        PyErr_SetString(PyExc_RuntimeError, "dragon_mp._fastpath: configure() has not been called");
        return -1;
    }
    return 0;
}

/* Whether pickle.dumps(o) is what any Pickler subclass makes of o: builtins the
 * pickler handles itself, never looking at a dispatch table or reducer. Sets
 * *big when it holds a bytes or bytearray of PAYLOAD_MIN bytes or more (then
 * pickling to parts saves a copy). */
static int is_plain(PyObject *o, int depth, int *budget, int *big)
{
    if (--*budget < 0)
        return 0;
    PyTypeObject *t = Py_TYPE(o);
    if (t == &PyBytes_Type || t == &PyByteArray_Type) {
        if (Py_SIZE(o) >= PAYLOAD_MIN)
            *big = 1;
        return 1;
    }
    /* Functions pickle by reference (save_global) before any table is looked
     * at; builtin functions have no reducer in ForkingPickler's table. A Pool
     * task (func, args, kwds) is then plain. */
    if (o == Py_None || t == &PyLong_Type || t == &PyUnicode_Type ||
        t == &PyFloat_Type || t == &PyBool_Type || t == &PyFunction_Type || t == &PyCFunction_Type)
        return 1;
    if (depth == 0)
        return 0;
    if (t == &PyTuple_Type) {
        for (Py_ssize_t i = 0, n = PyTuple_GET_SIZE(o); i < n; i++)
            if (!is_plain(PyTuple_GET_ITEM(o, i), depth - 1, budget, big))
                return 0;
        return 1;
    }
    if (t == &PyList_Type) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(o); i++)
            if (!is_plain(PyList_GET_ITEM(o, i), depth - 1, budget, big))
                return 0;
        return 1;
    }
    if (t == &PyDict_Type) {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(o, &pos, &k, &v))
            if (!is_plain(k, depth - 1, budget, big) || !is_plain(v, depth - 1, budget, big))
                return 0;
        return 1;
    }
    return 0;
}

/*
 * A bytes object is the commonest payload; a small one is pickled and unpickled
 * here. The pickle is the one pickle.dumps(b, protocol=3..5) makes without its
 * FRAME and MEMOIZE opcodes, both optional: PROTO 5, SHORT_BINBYTES n (n < 256)
 * or BINBYTES n (u32 le), the bytes, STOP. Any pickle.loads reads it back.
 */
#define SMALL_BYTES 2048
#define OP_PROTO 0x80
#define OP_FRAME 0x95
#define OP_SHORT_BINBYTES 0x43
#define OP_BINBYTES 0x42
#define OP_MEMOIZE 0x94
#define OP_STOP 0x2e

static size_t pickle_small_bytes(char *out, const char *data, size_t n)
{
    unsigned char *o = (unsigned char *)out;
    size_t p = 0;
    o[p++] = OP_PROTO;
    o[p++] = 5;
    if (n < 256) {
        o[p++] = OP_SHORT_BINBYTES;
        o[p++] = (unsigned char)n;
    } else {
        o[p++] = OP_BINBYTES;
        for (int i = 0; i < 4; i++)
            o[p++] = (unsigned char)(n >> (8 * i));
    }
    memcpy(o + p, data, n);
    p += n;
    o[p++] = OP_STOP;
    return p;
}

static u64 le_u64(const unsigned char *b, int n)
{
    u64 v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

/*
 * The bytes object the pickle in buf[0:len] holds if it is exactly one
 * bytes object (PROTO 3..5, [FRAME], SHORT_BINBYTES or BINBYTES, [MEMOIZE], STOP:
 * what pickle.dumps makes of a bytes object); NULL without an exception when it
 * is anything else (use loads).
 */
static PyObject *pickled_bytes(const char *buf, u64 len)
{
    const unsigned char *b = (const unsigned char *)buf;
    u64 p = 0, n;
    if (len < 5 || b[0] != OP_PROTO || b[1] < 3 || b[1] > 5)
        return NULL;
    p = 2;
    if (b[p] == OP_FRAME) {
        if (len < p + 9 || le_u64(b + p + 1, 8) != len - p - 9)
            return NULL;
        p += 9;
    }
    if (p + 2 > len)
        return NULL;
    if (b[p] == OP_SHORT_BINBYTES) {
        n = b[p + 1];
        p += 2;
    } else if (b[p] == OP_BINBYTES && p + 5 <= len) {
        n = le_u64(b + p + 1, 4);
        p += 5;
    } else {
        return NULL;
    }
    if (n > len - p)
        return NULL;
    u64 end = p + n;
    if (end < len && b[end] == OP_MEMOIZE)
        end++;
    if (end + 1 != len || b[end] != OP_STOP)
        return NULL;
    return PyBytes_FromStringAndSize(buf + p, (Py_ssize_t)n);
}

/*
 * A large bytes object skips pickle.dumps: its pickle is PROTO 5, no-op
 * padding, BINBYTES8 n (u64 le), the bytes, STOP, so the opcodes and the
 * object's own buffer are gathered into the channel (dmp_sendv): one copy of
 * the payload instead of two, and no fresh allocation of the message's size.
 * The padding puts the payload at byte 64 of the message, so both copies of
 * it (into the pool, out into the receiver's bytes) run on cache-line-aligned
 * pool memory (~3% of a cross-core 1 MiB copy). Any unpickler reads it (the
 * padding pushes and pops values); get_obj recognises the exact header and
 * copies the payload out itself (is_large_bytes, take_large_at).
 */
#define GATHER_BYTES 65536
#define OP_BINBYTES8 0x8e
#define LARGE_HEAD 64                   /* payload offset in a large-bytes message */

static void large_bytes_head(unsigned char head[LARGE_HEAD], u64 n)
{
    int p = 0;
    head[p++] = OP_PROTO;
    head[p++] = 5;
    memcpy(head + p, "I10\n0", 5);     /* INT 10, POP: 5 bytes, to make the rest even */
    p += 5;
    while (p < LARGE_HEAD - 9) {        /* NONE, POP */
        head[p++] = 'N';
        head[p++] = '0';
    }
    head[p++] = OP_BINBYTES8;
    for (int i = 0; i < 8; i++)
        head[p++] = (unsigned char)(n >> (8 * i));
}

#include "fastpath_objects.c"
#include "fastpath_alloc.c"

static PyObject *put_large_bytes(u64 addr, PyObject *obj, i64 timeout)
{
    static const unsigned char stop = OP_STOP;
    unsigned char head[LARGE_HEAD];
    u64 n = (u64)PyBytes_GET_SIZE(obj);
    large_bytes_head(head, n);
    const void *bufs[3] = {head, PyBytes_AS_STRING(obj), &stop};
    u64 lens[3] = {sizeof head, n, 1};
    int raised;
    Py_INCREF(obj);              /* its buffer is read with the GIL released */
    i64 rc = send_block_parts(addr, bufs, lens, 3, timeout, &raised);
    if (rc == RC_NOBLOCK) {
        sendv_n_ctx c = {addr, bufs, lens, 3};
        rc = sliced(sendv_n_attempt, &c, addr, timeout, -CODE_FULL, 0, &raised);
    }
    Py_DECREF(obj);
    if (raised)
        return NULL;
    if (rc < 0)
        return raise_rc(rc);
    Py_RETURN_NONE;
}

/* Whether the large message at src is a large-bytes message (put_large_bytes' layout). */
static int is_large_bytes(const unsigned char *src, u64 len)
{
    if (len < LARGE_HEAD + 1 || src[len - 1] != OP_STOP)
        return 0;
    unsigned char head[LARGE_HEAD];
    large_bytes_head(head, len - LARGE_HEAD - 1);
    return memcmp(src, head, LARGE_HEAD) == 0;
}

/* Pickle obj and send it (an inline message in C when d allows, d may be NULL);
 * NULL with an exception on failure. */
static PyObject *put_obj(u64 addr, chan_direct *d, PyObject *obj, i64 timeout)
{
    if (go_sendv != NULL && PyBytes_CheckExact(obj) && PyBytes_GET_SIZE(obj) >= GATHER_BYTES)
        return put_large_bytes(addr, obj, timeout);
    int raised = 0;
    i64 rc;
    if (PyBytes_CheckExact(obj) && PyBytes_GET_SIZE(obj) <= SMALL_BYTES) {
        char tmp[SMALL_BYTES + 16];
        size_t n = pickle_small_bytes(tmp, PyBytes_AS_STRING(obj), (size_t)PyBytes_GET_SIZE(obj));
        rc = send_one(addr, d, tmp, n, timeout, &raised);
    } else {
        rc = put_obj_rc(addr, d, obj, NULL, 0, timeout, &raised);
    }
    if (raised)
        return NULL;
    if (rc < 0)
        return raise_rc(rc);
    Py_RETURN_NONE;
}

/*
 * Unpickle a large message straight from the pool (one copy fewer than bytes
 * first), then free it. The block stays ours while loads runs, whatever code
 * it calls. If something kept a view of the memory (release() fails), the
 * block is not freed: leaked until the run ends, never reused under a reader.
 */
static PyObject *loads_large(u64 addr, u64 off, u64 len)
{
    char *src = (char *)(uintptr_t)(go_pool_base() + off);
    PyObject *view = PyMemoryView_FromMemory(src, (Py_ssize_t)len, PyBUF_READ);
    if (view == NULL) {
        go_release_msg(addr, off, len);
        return NULL;
    }
    PyObject *obj = PyObject_CallOneArg(cfg_loads, view);
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb); /* loads' exception, if any, outlives release()'s */
    PyObject *r = PyObject_CallMethod(view, "release", NULL);
    Py_DECREF(view);
    int released = r != NULL;
    Py_XDECREF(r);
    PyErr_Clear();
    PyErr_Restore(et, ev, tb);
    if (released)
        go_release_msg(addr, off, len);
    return obj;
}

/* Receive (an inline message in C when d allows, d may be NULL) and unpickle;
 * NULL with an exception on failure or timeout. */
static PyObject *get_obj(u64 addr, chan_direct *d, i64 timeout, u64 cap)
{
    recv_ctx c;
    c.addr = addr;
    c.cap = cap;
    c.len = c.off = 0;
    i64 rc;
    if (chan_direct_hdr(d) != NULL && (c.buf = thread_buffer(cap)) != NULL &&
        chan_try_recv(d, c.buf, cap, &c.len)) {
        rc = 0;
    } else {
        int raised;
        rc = sliced(recv_attempt, &c, c.addr, timeout, -CODE_TIMEOUT, 1, &raised);
        if (raised)
            return NULL;
    }
    if (rc == 1) {
        if (is_large_bytes((const unsigned char *)(uintptr_t)(go_pool_base() + c.off), c.len))
            return take_large_at(c.addr, c.off, c.len, LARGE_HEAD, c.len - LARGE_HEAD - 1);
        return loads_large(c.addr, c.off, c.len);
    }
    if (rc == RC_NOMEM)
        return PyErr_NoMemory();
    if (rc != 0)
        return raise_rc(rc);
    PyObject *b = pickled_bytes(c.buf, c.len);
    if (b != NULL || PyErr_Occurred())
        return b;
    PyObject *data = PyBytes_FromStringAndSize(c.buf, (Py_ssize_t)c.len);
    if (data == NULL)
        return NULL;
    PyObject *obj = PyObject_CallOneArg(cfg_loads, data);
    Py_DECREF(data);
    return obj;
}

PyDoc_STRVAR(put_doc,
"put(addr, obj, timeout_ns)\n--\n\n"
"Pickle obj (see configure) and send it to the channel at addr; raises through\n"
"raise_for on failure (a timeout on a full channel: raise_for(-FULL)).");

static PyObject *fp_put(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    CHECK_READY();
    if (check_nargs("put", nargs, 3, 3) < 0 || require_configured() < 0)
        return NULL;
    u64 addr;
    i64 timeout;
    if (as_u64(args[0], &addr) < 0 || as_i64(args[2], &timeout) < 0)
        return NULL;
    return put_obj(addr, NULL, args[1], timeout);
}

PyDoc_STRVAR(get_doc,
"get(addr, timeout_ns, inline_cap=65536) -> obj\n--\n\n"
"Receive the next message of the channel at addr and unpickle it; raises through\n"
"raise_for on failure (nothing in time: raise_for(-TIMEOUT)).");

static PyObject *fp_get(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    CHECK_READY();
    if (check_nargs("get", nargs, 2, 3) < 0 || require_configured() < 0)
        return NULL;
    u64 addr;
    i64 timeout, cap = DEFAULT_INLINE_CAP;
    if (as_u64(args[0], &addr) < 0 || as_i64(args[1], &timeout) < 0 ||
        (nargs > 2 && as_i64(args[2], &cap) < 0))
        return NULL;
    if (cap < 0) {
        PyErr_SetString(PyExc_ValueError, "get(): negative inline_cap");
        return NULL;
    }
    return get_obj(addr, NULL, timeout, (u64)cap);
}

/* ---- (block=True, timeout=None) arguments, as stdlib's acquire, put and get take them */

/* Parse ([obj,] block=True, timeout=None), positional or keywords, into a Go timeout in ns
 * (<0 forever, 0 do not wait). obj_kw: the name of a leading required argument (stored in
 * *obj), or NULL when there is none. */
static int timeout_arg(PyObject *timeout, i64 *out);

static int block_timeout(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                         const char *obj_kw, PyObject **obj, i64 *out)
{
    PyObject *pos[3] = {NULL, NULL, NULL};   /* [obj,] block, timeout */
    Py_ssize_t lead = obj_kw != NULL, max = lead + 2;
    if (nargs > max) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %zd positional arguments (%zd given)", fname,
                     max, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++)
        pos[i] = args[i];
    if (kwnames != NULL) {
        for (Py_ssize_t i = 0, n = PyTuple_GET_SIZE(kwnames); i < n; i++) {
            PyObject *k = PyTuple_GET_ITEM(kwnames, i);
            Py_ssize_t slot;
            if (PyUnicode_CompareWithASCIIString(k, "block") == 0)
                slot = lead;
            else if (PyUnicode_CompareWithASCIIString(k, "timeout") == 0)
                slot = lead + 1;
            else if (obj_kw != NULL && PyUnicode_CompareWithASCIIString(k, obj_kw) == 0)
                slot = 0;
            else {
                PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname, k);
                return -1;
            }
            if (pos[slot] != NULL) {
                PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%U'", fname, k);
                return -1;
            }
            pos[slot] = args[nargs + i];
        }
    }
    if (obj_kw != NULL) {
        if (pos[0] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname, obj_kw);
            return -1;
        }
        *obj = pos[0];
    }
    PyObject *block = pos[lead], *timeout = pos[lead + 1];
    if (block != NULL) {
        int b = PyObject_IsTrue(block);
        if (b < 0)
            return -1;
        if (!b) {
            *out = 0;
            return 0;
        }
    }
    return timeout_arg(timeout, out);
}

/* A stdlib timeout (None or NULL: forever; <= 0: do not wait) as a Go timeout in ns. */
static int timeout_arg(PyObject *timeout, i64 *out)
{
    if (timeout == NULL || timeout == Py_None) {
        *out = -1;
        return 0;
    }
    double t = PyFloat_AsDouble(timeout);
    if (t == -1.0 && PyErr_Occurred())
        return -1;
    if (t != t) {
        PyErr_SetString(PyExc_ValueError, "timeout is NaN");
        return -1;
    }
    if (t <= 0)
        *out = 0;
    else if (t * 1e9 >= 9.2e18)
        *out = -1; /* longer than anyone waits */
    else
        *out = (i64)(t * 1e9);
    return 0;
}

/* ---- Sem: a semaphore with C methods (acquire, release), stdlib SemLock-like */

/*
 * The semaphore is gocore/shmsync.Semaphore (semaphore.go): {count, max,
 * waiters, spin} uint32 words. KEEP IN SYNC WITH gocore/shmsync/semaphore.go:
 * the uncontended steps run here as atomics on those words, the same steps as
 * its tryAcquire and Release:
 *   acquire: CAS count c -> c-1 while c != 0;
 *   release: CAS count c -> c+1, refused (TOOMANYRELEASES) when
 *            (max != 0 && c >= max) || c == UINT32_MAX; then FUTEX_WAKE(count, 1)
 *            (shared, not private) only when waiters != 0.
 * Waiting goes through Go (dmp_sem_acquire), which spins, registers in
 * `waiters` before its last check of count and sleeps on the count futex, so
 * the release above always wakes it. Go and C may act on one semaphore at the
 * same time, from any processes.
 *
 * Where the struct lives in this process comes from Go (dmp_sem_ptr, which
 * validates the object), so this file knows nothing of the object header.
 * invalidate() (call it before the run's pool is unmapped) stops every object
 * made before it from touching the memory.
 */


/* An object's handle is good while the tag word before its payload (the
 * object header's magic and generation, gocore/runtime.ObjectTag) is the one
 * it was made with: once the object is freed, or its memory holds a newer
 * object, the handle goes through Go, which raises. One 8-byte load, in the
 * cache line of the struct itself. */
typedef struct {
    const u64 *tagp;
    u64 tag;
} obj_guard;

static inline int guard_ok(const obj_guard *g)
{
    return LOAD(g->tagp) == g->tag;
}

/* The struct's address in this process from ptr_fn(addr) if it equals `word`
 * (the caller's claim; 0: do not touch it), with its guard; else NULL
 * (everything through Go). */
static void *checked_word(u64 (*ptr_fn)(u64), u64 addr, u64 word, obj_guard *g)
{
    g->tagp = NULL;
    g->tag = 0;
    if (word == 0 || ptr_fn == NULL || go_object_tag == NULL || go_object_tag_offset == NULL ||
        state != ST_READY)
        return NULL;
    u64 p = ptr_fn(addr);
    if (p == 0 || p != word)
        return NULL;
    u64 tag = go_object_tag(addr), off = go_object_tag_offset();
    if (tag == 0 || off > p || (p - off) % 8 != 0)
        return NULL;
    g->tagp = (const u64 *)(uintptr_t)(p - off);
    g->tag = tag;
    return guard_ok(g) ? (void *)(uintptr_t)p : NULL;
}

typedef struct {
    PyObject_HEAD
    u64 addr;
    uint32_t *word;              /* count, max, waiters, spin; NULL: everything through Go */
    u64 epoch;
    obj_guard guard;
    unsigned long last_tid;      /* thread of the last acquire here */
    long count;                  /* acquires minus releases in this process (stdlib's count) */
    PyObject *owner;             /* kept alive as long as this object (and its bound methods) */
    PyObject *weakreflist;
} Sem;

static inline uint32_t *sem_word(Sem *s)
{
    /* epoch first: the guard's word is pool memory, unmapped with it */
    if (UNLIKELY(s->word != NULL && (s->epoch != epoch || !guard_ok(&s->guard))))
        s->word = NULL;
    return s->word;
}

/* shmsync.Semaphore.tryAcquire */
static inline int try_acquire(uint32_t *count)
{
    uint32_t c = LOAD(count);
    while (c != 0) {
        if (CAS(count, &c, c - 1))
            return 1;
    }
    return 0;
}

static int sem_init(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"addr", "word", "owner", NULL};
    Sem *s = (Sem *)self;
    unsigned long long addr, word = 0;
    PyObject *owner = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "K|KO:Sem", kwlist, &addr, &word, &owner))
        return -1;
    if (word % 4 != 0) {
        PyErr_SetString(PyExc_ValueError, "Sem(): misaligned word");
        return -1;
    }
    Py_XINCREF(owner);
    Py_XSETREF(s->owner, owner);
    s->addr = addr;
    s->epoch = epoch;
    s->count = 0;
    s->last_tid = 0;
    s->word = checked_word(go_sem_ptr, addr, word, &s->guard);
    return 0;
}

static PyObject *sem_acquire_method(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Sem *s = (Sem *)self;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    CHECK_READY();
    uint32_t *w = sem_word(s);
    i64 timeout = -1;
    if (nargs != 0 || kwnames != NULL) {
        if (block_timeout("acquire", args, nargs, kwnames, NULL, NULL, &timeout) < 0)
            return NULL;
    }
    i64 rc;
    if (w != NULL && try_acquire(w))
        rc = 1;
    else if (w != NULL && timeout == 0)
        rc = 0;
    else if (timeout == 0)
        GO_CALL(s->addr, rc, go_sem_acquire(s->addr, 0));
    else {
        addr_ctx c = {s->addr};
        int raised;
        rc = sliced(sem_acquire_attempt, &c, c.addr, timeout, 0, 1, &raised);
        if (raised)
            return NULL;
    }
    if (rc == 1) {
        s->count++;
        s->last_tid = PyThread_get_thread_ident();
        Py_RETURN_TRUE;
    }
    if (rc == 0)
        Py_RETURN_FALSE;
    return raise_rc(rc);
}

static PyObject *sem_release_method(PyObject *self, PyObject *unused)
{
    Sem *s = (Sem *)self;
    CHECK_READY();
    uint32_t *w = sem_word(s);
    if (w != NULL) {
        /* shmsync.Semaphore.Release */
        uint32_t c = LOAD(&w[0]);
        for (;;) {
            uint32_t max = LOAD(&w[1]);
            if ((max != 0 && c >= max) || c == UINT32_MAX)
                return raise_rc(-CODE_TOOMANYRELEASES);
            if (CAS(&w[0], &c, c + 1))
                break;
        }
        if (LOAD(&w[2]) != 0)
            futex_wake(&w[0], 1);
    } else {
        i64 rc;
        GO_CALL(s->addr, rc, go_sem_release(s->addr));
        if (rc < 0)
            return raise_rc(rc);
    }
    if (s->count > 0)
        s->count--;
    Py_RETURN_NONE;
}

static PyObject *sem_enter(PyObject *self, PyObject *unused)
{
    return sem_acquire_method(self, NULL, 0, NULL);
}

static PyObject *sem_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return sem_release_method(self, NULL);
}

static PyObject *sem_is_mine(PyObject *self, PyObject *unused)
{
    Sem *s = (Sem *)self;
    return PyBool_FromLong(s->count > 0 && s->last_tid == PyThread_get_thread_ident());
}

static PyObject *sem_count(PyObject *self, PyObject *unused)
{
    return PyLong_FromLong(((Sem *)self)->count);
}

static int sem_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(((Sem *)self)->owner);
    return 0;
}

static int sem_clear(PyObject *self)
{
    Py_CLEAR(((Sem *)self)->owner);
    return 0;
}

static void sem_dealloc(PyObject *self)
{
    PyObject_GC_UnTrack(self);
    if (((Sem *)self)->weakreflist != NULL)
        PyObject_ClearWeakRefs(self);
    sem_clear(self);
    Py_TYPE(self)->tp_free(self); /* a static type: subtype_dealloc drops a subclass's reference */
}

static PyObject *sem_direct(PyObject *self, void *closure)
{
    return PyBool_FromLong(sem_word((Sem *)self) != NULL);
}

static PyObject *sem_addr(PyObject *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(((Sem *)self)->addr);
}

static PyMethodDef sem_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))sem_acquire_method, METH_FASTCALL | METH_KEYWORDS,
     "acquire(block=True, timeout=None) -> bool"},
    {"release", sem_release_method, METH_NOARGS, "release()"},
    {"__enter__", sem_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))sem_exit, METH_FASTCALL, NULL},
    {"_is_mine", sem_is_mine, METH_NOARGS, "Held by this thread (acquired here and not released)."},
    {"_count", sem_count, METH_NOARGS, "Acquires minus releases through this object."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef sem_getset[] = {
    {"direct", sem_direct, NULL, "Whether acquire/release touch the shared word themselves.", NULL},
    {"addr", sem_addr, NULL, "The semaphore's address in the run.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SemType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dragon_mp._fastpath.Sem",
    .tp_basicsize = sizeof(Sem),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Sem(addr, word=0, owner=None): the semaphore at addr, with C acquire/release.\n\n"
              "word: the address of its shmsync.Semaphore in this process, from\n"
              "dragon_mp._fast.sem_word(addr) (0: every call goes through Go). owner: any object\n"
              "to keep alive as long as this one or one of its bound methods lives (the Python\n"
              "object whose finalizer frees the semaphore). Supports weak references; subclassable.",
    .tp_dealloc = sem_dealloc,
    .tp_traverse = sem_traverse,
    .tp_clear = sem_clear,
    .tp_weaklistoffset = offsetof(Sem, weakreflist),
    .tp_methods = sem_methods,
    .tp_getset = sem_getset,
    .tp_init = sem_init,
    .tp_new = PyType_GenericNew,
};

/* ---- RLock and Event: C methods on gocore/shmsync.RecursiveLock and Event */

/*
 * KEEP IN SYNC WITH gocore/shmsync/rlock.go and gocore/shmsync/event.go: the
 * steps that never wait run here as atomics on the shared words, exactly as
 * there; waiting goes through Go (dmp_rlock_acquire, dmp_event_wait).
 *
 * RecursiveLock {state u32, waiters u32, count u32, spin u32, owner u64}:
 *   acquire: owner == me: count++ (refused at UINT32_MAX); else CAS state 0 -> 1,
 *            then store owner = me, count = 1;
 *   release: owner != me: NOTOWNER; count > 1: count--; else count = 0,
 *            owner = 0, state = 0, then FUTEX_WAKE(state, 1) only when waiters != 0.
 * Event {state u32 (bit 0 set, bits 31..1 set counter), waiters u32}:
 *   set:   if clear, CAS s -> (s + 2) | 1, then FUTEX_WAKE(state, all) only when
 *          waiters != 0;  clear: CAS s -> s & ~1;  is_set: s & 1.
 */

/* This thread's RLock owner identity, node << 54 | pid << 32 | thread number
 * (never 0, a number never reused within a process; pids fit in 22 bits, and
 * the node index of a multi-node run, bits 54..62, keeps equal pids of
 * different hosts apart while the value stays a positive int64);
 * dragon_mp.synchronize computes the same. */
static __thread u64 tls_owner;
static __thread unsigned tls_fork_gen;
static u64 thread_numbers;

static u64 node_bits(void)
{
    const char *node = getenv("DRAGON_MP_NODE");
    return node ? ((u64)strtoul(node, NULL, 10) & 0x1ffu) << 54 : 0;
}

static inline u64 thread_owner(void)
{
    if (UNLIKELY(tls_owner == 0 || tls_fork_gen != fork_gen)) {
        u64 n;
        do
            n = __atomic_add_fetch(&thread_numbers, 1, __ATOMIC_RELAXED) & 0xffffffffu;
        while (n == 0);
        tls_owner = node_bits() | ((u64)getpid() << 32) | n;
        tls_fork_gen = fork_gen;
    }
    return tls_owner;
}

PyDoc_STRVAR(thread_owner_doc,
"thread_owner() -> int\n--\n\n"
"This thread's identity as an RLock owner: node << 54 | pid << 32 | a per-process\n"
"thread number that is never reused (never 0).");

static PyObject *fp_thread_owner(PyObject *mod, PyObject *unused)
{
    return PyLong_FromUnsignedLongLong(thread_owner());
}

typedef struct {
    PyObject_HEAD
    u64 addr;
    uint32_t *word;              /* the shmsync struct; NULL: everything through Go */
    u64 epoch;
    obj_guard guard;
    PyObject *owner;             /* kept alive as long as this object (and its bound methods) */
    PyObject *weakreflist;
} ShObj;

static inline uint32_t *obj_word(ShObj *o)
{
    /* epoch first: the guard's word is pool memory, unmapped with it */
    if (UNLIKELY(o->word != NULL && (o->epoch != epoch || !guard_ok(&o->guard))))
        o->word = NULL;
    return o->word;
}

static int obj_init(PyObject *self, PyObject *args, PyObject *kwargs, const char *fmt, u64 (*ptr_fn)(u64))
{
    static char *kwlist[] = {"addr", "word", "owner", NULL};
    ShObj *o = (ShObj *)self;
    unsigned long long addr, word = 0;
    PyObject *owner = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, fmt, kwlist, &addr, &word, &owner))
        return -1;
    if (word % 8 != 0) {
        PyErr_SetString(PyExc_ValueError, "misaligned word");
        return -1;
    }
    Py_XINCREF(owner);
    Py_XSETREF(o->owner, owner);
    o->addr = addr;
    o->epoch = epoch;
    o->word = checked_word(ptr_fn, addr, word, &o->guard);
    return 0;
}

static int obj_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(((ShObj *)self)->owner);
    return 0;
}

static int obj_clear(PyObject *self)
{
    Py_CLEAR(((ShObj *)self)->owner);
    return 0;
}

static void obj_dealloc(PyObject *self)
{
    PyObject_GC_UnTrack(self);
    if (((ShObj *)self)->weakreflist != NULL)
        PyObject_ClearWeakRefs(self);
    obj_clear(self);
    Py_TYPE(self)->tp_free(self);
}

static PyObject *obj_direct(PyObject *self, void *closure)
{
    return PyBool_FromLong(obj_word((ShObj *)self) != NULL);
}

static PyObject *obj_addr(PyObject *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(((ShObj *)self)->addr);
}

static PyGetSetDef obj_getset[] = {
    {"direct", obj_direct, NULL, "Whether the methods touch the shared words themselves.", NULL},
    {"addr", obj_addr, NULL, "The object's address in the run.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyObject *missing(const char *fn)
{
    PyErr_Format(PyExc_RuntimeError, "dragon_mp._fastpath: the Go library has no function %s", fn);
    return NULL;
}

/* RLock */

static int rlock_init(PyObject *self, PyObject *args, PyObject *kwargs)
{
    return obj_init(self, args, kwargs, "K|KO:RLock", go_rlock_ptr);
}

typedef struct {
    u64 addr, owner;
} rlock_ctx;

static i64 rlock_acquire_attempt(void *p, i64 timeout)
{
    rlock_ctx *c = p;
    return go_rlock_acquire(c->addr, c->owner, timeout);
}

static PyObject *rlock_acquire(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    ShObj *o = (ShObj *)self;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    CHECK_READY();
    i64 timeout = -1;
    if (nargs != 0 || kwnames != NULL) {
        if (block_timeout("acquire", args, nargs, kwnames, NULL, NULL, &timeout) < 0)
            return NULL;
    }
    u64 me = thread_owner();
    uint32_t *w = obj_word(o);
    if (w != NULL) {
        u64 *owner = (u64 *)(w + 4);
        if (LOAD(owner) == me) {          /* only this thread stores `me` there */
            uint32_t n = LOAD(&w[2]);
            if (n == UINT32_MAX)
                Py_RETURN_FALSE;
            STORE(&w[2], n + 1);
            Py_RETURN_TRUE;
        }
        uint32_t free_ = 0;
        if (CAS(&w[0], &free_, 1)) {
            STORE(owner, me);
            STORE(&w[2], 1);
            Py_RETURN_TRUE;
        }
        if (timeout == 0)
            Py_RETURN_FALSE;
    }
    if (go_rlock_acquire == NULL)
        return missing("dmp_rlock_acquire");
    rlock_ctx c = {o->addr, me};
    int raised;
    i64 rc = sliced(rlock_acquire_attempt, &c, c.addr, timeout, 0, 1, &raised);
    if (raised)
        return NULL;
    if (rc == 1)
        Py_RETURN_TRUE;
    if (rc == 0)
        Py_RETURN_FALSE;
    return raise_rc(rc);
}

static PyObject *rlock_release(PyObject *self, PyObject *unused)
{
    ShObj *o = (ShObj *)self;
    CHECK_READY();
    u64 me = thread_owner();
    uint32_t *w = obj_word(o);
    if (w != NULL) {
        u64 *owner = (u64 *)(w + 4);
        if (LOAD(owner) != me)
            return raise_rc(-CODE_NOTOWNER);
        uint32_t n = LOAD(&w[2]);
        if (n > 1) {
            STORE(&w[2], n - 1);
            Py_RETURN_NONE;
        }
        STORE(&w[2], 0);
        STORE(owner, 0);
        STORE(&w[0], 0);
        if (LOAD(&w[1]) != 0)
            futex_wake(&w[0], 1);
        Py_RETURN_NONE;
    }
    if (go_rlock_release == NULL)
        return missing("dmp_rlock_release");
    i64 rc;
    GO_CALL(o->addr, rc, go_rlock_release(o->addr, me));
    if (rc < 0)
        return raise_rc(rc);
    Py_RETURN_NONE;
}

static PyObject *rlock_enter(PyObject *self, PyObject *unused)
{
    return rlock_acquire(self, NULL, 0, NULL);
}

static PyObject *rlock_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return rlock_release(self, NULL);
}

static PyMethodDef rlock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))rlock_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire(block=True, timeout=None) -> bool"},
    {"release", rlock_release, METH_NOARGS, "release(); AssertionError when this thread does not hold it"},
    {"__enter__", rlock_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))rlock_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RLockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dragon_mp._fastpath.RLock",
    .tp_basicsize = sizeof(ShObj),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "RLock(addr, word=0, owner=None): the recursive lock at addr, with C acquire/release\n"
              "for this thread (thread_owner()).\n\n"
              "word: dmp_rlock_ptr(addr) (0: every call goes through Go). owner: any object to keep\n"
              "alive as long as this one or one of its bound methods lives.",
    .tp_dealloc = obj_dealloc,
    .tp_traverse = obj_traverse,
    .tp_clear = obj_clear,
    .tp_weaklistoffset = offsetof(ShObj, weakreflist),
    .tp_methods = rlock_methods,
    .tp_getset = obj_getset,
    .tp_init = rlock_init,
    .tp_new = PyType_GenericNew,
};

/* Event */

static int event_init(PyObject *self, PyObject *args, PyObject *kwargs)
{
    return obj_init(self, args, kwargs, "K|KO:Event", go_event_ptr);
}

static PyObject *event_go(i64 (*fn)(u64), const char *name, u64 addr)
{
    if (fn == NULL)
        return missing(name);
    i64 rc;
    GO_CALL(addr, rc, fn(addr));
    if (rc < 0)
        return raise_rc(rc);
    return PyLong_FromLongLong(rc);
}

static PyObject *event_set(PyObject *self, PyObject *unused)
{
    ShObj *o = (ShObj *)self;
    CHECK_READY();
    uint32_t *w = obj_word(o);
    if (w == NULL) {
        PyObject *r = event_go(go_event_set, "dmp_event_set", o->addr);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
        Py_RETURN_NONE;
    }
    uint32_t s = LOAD(&w[0]);
    for (;;) {
        if (s & 1)
            Py_RETURN_NONE;
        if (CAS(&w[0], &s, (s + 2) | 1))
            break;
    }
    if (LOAD(&w[1]) != 0)
        futex_wake(&w[0], FUTEX_WAKE_ALL);
    Py_RETURN_NONE;
}

static PyObject *event_clear(PyObject *self, PyObject *unused)
{
    ShObj *o = (ShObj *)self;
    CHECK_READY();
    uint32_t *w = obj_word(o);
    if (w == NULL) {
        PyObject *r = event_go(go_event_clear, "dmp_event_clear", o->addr);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
        Py_RETURN_NONE;
    }
    uint32_t s = LOAD(&w[0]);
    while (s & 1) {
        if (CAS(&w[0], &s, s & ~1u))
            break;
    }
    Py_RETURN_NONE;
}

static PyObject *event_is_set(PyObject *self, PyObject *unused)
{
    ShObj *o = (ShObj *)self;
    CHECK_READY();
    uint32_t *w = obj_word(o);
    if (w == NULL) {
        PyObject *r = event_go(go_event_is_set, "dmp_event_is_set", o->addr);
        if (r == NULL)
            return NULL;
        int set = PyLong_AsLong(r) != 0;
        Py_DECREF(r);
        return PyBool_FromLong(set);
    }
    return PyBool_FromLong(LOAD(&w[0]) & 1);
}

static i64 event_wait_attempt(void *p, i64 timeout)
{
    return go_event_wait(((addr_ctx *)p)->addr, timeout);
}

static PyObject *event_wait(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    ShObj *o = (ShObj *)self;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    CHECK_READY();
    PyObject *t = nargs > 0 ? args[0] : NULL;
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "wait() takes at most 1 argument (%zd given)", nargs);
        return NULL;
    }
    if (kwnames != NULL) {
        for (Py_ssize_t i = 0, n = PyTuple_GET_SIZE(kwnames); i < n; i++) {
            PyObject *k = PyTuple_GET_ITEM(kwnames, i);
            if (PyUnicode_CompareWithASCIIString(k, "timeout") != 0) {
                PyErr_Format(PyExc_TypeError, "wait() got an unexpected keyword argument '%U'", k);
                return NULL;
            }
            if (t != NULL) {
                PyErr_SetString(PyExc_TypeError, "wait() got multiple values for argument 'timeout'");
                return NULL;
            }
            t = args[nargs + i];
        }
    }
    i64 timeout;
    if (timeout_arg(t, &timeout) < 0)
        return NULL;
    uint32_t *w = obj_word(o);
    if (w != NULL && (LOAD(&w[0]) & 1))
        Py_RETURN_TRUE;
    if (go_event_wait == NULL)
        return missing("dmp_event_wait");
    addr_ctx c = {o->addr};
    int raised;
    i64 rc = sliced(event_wait_attempt, &c, c.addr, timeout, 0, 1, &raised);
    if (raised)
        return NULL;
    if (rc == 1)
        Py_RETURN_TRUE;
    if (rc == 0)
        Py_RETURN_FALSE;
    return raise_rc(rc);
}

static PyMethodDef event_methods[] = {
    {"set", event_set, METH_NOARGS, "set(): set the flag, waking every waiter"},
    {"clear", event_clear, METH_NOARGS, "clear()"},
    {"is_set", event_is_set, METH_NOARGS, "is_set() -> bool"},
    {"wait", (PyCFunction)(void (*)(void))event_wait, METH_FASTCALL | METH_KEYWORDS,
     "wait(timeout=None) -> bool: whether the flag is (or was, meanwhile) set"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject EventType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dragon_mp._fastpath.Event",
    .tp_basicsize = sizeof(ShObj),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Event(addr, word=0, owner=None): the event at addr, with C set/clear/is_set/wait.\n\n"
              "word: dmp_event_ptr(addr) (0: every call goes through Go). owner: any object to keep\n"
              "alive as long as this one or one of its bound methods lives.",
    .tp_dealloc = obj_dealloc,
    .tp_traverse = obj_traverse,
    .tp_clear = obj_clear,
    .tp_weaklistoffset = offsetof(ShObj, weakreflist),
    .tp_methods = event_methods,
    .tp_getset = obj_getset,
    .tp_init = event_init,
    .tp_new = PyType_GenericNew,
};

PyDoc_STRVAR(direct_stats_doc,
"direct_stats() -> (sends, recvs, sends_to_go, recvs_to_go)\n--\n\n"
"In this process so far: inline messages sent and received by C on the channel itself, and\n"
"attempts on a channel of this pool that C handed to Go (contended, large, full, empty, closed,\n"
"a chunk to allocate or free). For tests and profiling.");

static PyObject *fp_direct_stats(PyObject *mod, PyObject *unused)
{
    return Py_BuildValue("(KKKK)", (unsigned long long)direct_stats[0], (unsigned long long)direct_stats[1],
                         (unsigned long long)direct_stats[2], (unsigned long long)direct_stats[3]);
}

PyDoc_STRVAR(direct_ok_doc, "direct_ok() -> bool\n--\n\nWhether channels may be used from C (the layout matched).");

static PyObject *fp_direct_ok(PyObject *mod, PyObject *unused)
{
    return PyBool_FromLong(chan_direct_ok);
}

PyDoc_STRVAR(invalidate_doc,
"invalidate()\n--\n\n"
"The run's pool is about to be unmapped: every Sem, RLock, Event and Chan made so far stops touching\n"
"shared memory itself (its calls go through Go, which reports the ended run).");

static PyObject *fp_invalidate(PyObject *mod, PyObject *unused)
{
    epoch++;
    Py_RETURN_NONE;
}

/* ---- Chan: a queue endpoint with C put/get (pickling included) */

typedef struct {
    PyObject_HEAD
    u64 addr;
    u64 cap;                     /* the channel's inline size */
    chan_direct direct;          /* where the channel lives here; hdr NULL: everything through Go */
    char closed;
    char used;                   /* put was called: stdlib's close() only takes effect after a put */
    PyObject *owner;             /* kept alive as long as this object (and its bound methods) */
    PyObject *weakreflist;
} Chan;

static int chan_init(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"addr", "inline", "owner", "direct", NULL};
    Chan *c = (Chan *)self;
    unsigned long long addr, cap = DEFAULT_INLINE_CAP;
    PyObject *owner = NULL;
    int direct = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "K|KOp:Chan", kwlist, &addr, &cap, &owner, &direct))
        return -1;
    Py_XINCREF(owner);
    Py_XSETREF(c->owner, owner);
    c->addr = addr;
    c->cap = cap;
    c->closed = 0;
    c->used = 0;
    c->direct.hdr = NULL;
    c->direct.epoch = epoch;
    if (direct)
        chan_direct_init(&c->direct, addr);
    return 0;
}

static PyObject *chan_closed_error(void)
{
    PyErr_SetString(PyExc_ValueError, "Queue is closed");
    return NULL;
}

static PyObject *chan_put(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Chan *c = (Chan *)self;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    CHECK_READY();
    if (require_configured() < 0)
        return NULL;
    i64 timeout = -1;
    PyObject *obj = nargs > 0 ? args[0] : NULL;
    if ((nargs != 1 || kwnames != NULL) &&
        block_timeout("put", args, nargs, kwnames, "obj", &obj, &timeout) < 0)
        return NULL;
    if (UNLIKELY(c->closed))
        return chan_closed_error();
    c->used = 1;
    return put_obj(c->addr, &c->direct, obj, timeout);
}

static PyObject *chan_get(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Chan *c = (Chan *)self;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    CHECK_READY();
    if (require_configured() < 0)
        return NULL;
    i64 timeout = -1;
    if ((nargs > 0 || kwnames != NULL) && block_timeout("get", args, nargs, kwnames, NULL, NULL, &timeout) < 0)
        return NULL;
    if (UNLIKELY(c->closed))
        return chan_closed_error();
    return get_obj(c->addr, &c->direct, timeout, c->cap);
}

static PyObject *chan_put_nowait(PyObject *self, PyObject *obj)
{
    Chan *c = (Chan *)self;
    CHECK_READY();
    if (require_configured() < 0)
        return NULL;
    if (UNLIKELY(c->closed))
        return chan_closed_error();
    c->used = 1;
    return put_obj(c->addr, &c->direct, obj, 0);
}

static PyObject *chan_get_nowait(PyObject *self, PyObject *unused)
{
    Chan *c = (Chan *)self;
    CHECK_READY();
    if (require_configured() < 0)
        return NULL;
    if (UNLIKELY(c->closed))
        return chan_closed_error();
    return get_obj(c->addr, &c->direct, 0, c->cap);
}

static PyObject *chan_put_with(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Chan *c = (Chan *)self;
    CHECK_READY();
    if (check_nargs("put_with", nargs, 1, 2) < 0 || require_configured() < 0)
        return NULL;
    if (UNLIKELY(c->closed))
        return chan_closed_error();
    c->used = 1;
    if (nargs == 1 || args[1] == Py_None)
        return put_obj(c->addr, &c->direct, args[0], -1);
    Py_buffer t;
    if (PyObject_GetBuffer(args[1], &t, PyBUF_SIMPLE) < 0)
        return NULL;
    int raised = 0;
    i64 rc = put_obj_rc(c->addr, &c->direct, args[0], t.buf, (u64)t.len, -1, &raised);
    PyBuffer_Release(&t);
    if (raised)
        return NULL;
    if (rc < 0)
        return raise_rc(rc);
    Py_RETURN_NONE;
}

static PyObject *chan_get_msg(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Chan *c = (Chan *)self;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    CHECK_READY();
    i64 timeout = -1, rc;
    if ((nargs > 0 || kwnames != NULL) && block_timeout("get_msg", args, nargs, kwnames, NULL, NULL, &timeout) < 0)
        return NULL;
    if (UNLIKELY(c->closed))
        return chan_closed_error();
    PyObject *r = recv_raw(c->addr, &c->direct, timeout, c->cap, &rc);
    if (r != NULL || PyErr_Occurred())
        return r;
    return raise_rc(rc);
}

static PyObject *chan_close(PyObject *self, PyObject *unused)
{
    ((Chan *)self)->closed = 1;
    Py_RETURN_NONE;
}

static PyMethodDef chan_methods[] = {
    {"put", (PyCFunction)(void (*)(void))chan_put, METH_FASTCALL | METH_KEYWORDS,
     "put(obj, block=True, timeout=None)"},
    {"get", (PyCFunction)(void (*)(void))chan_get, METH_FASTCALL | METH_KEYWORDS,
     "get(block=True, timeout=None) -> obj"},
    {"put_nowait", chan_put_nowait, METH_O, "put_nowait(obj)"},
    {"get_nowait", chan_get_nowait, METH_NOARGS, "get_nowait() -> obj"},
    {"put_with", (PyCFunction)(void (*)(void))chan_put_with, METH_FASTCALL,
     "put_with(obj, trailer=None): put the pickle of obj followed by the bytes trailer (a raw\n"
     "message: take it with get_msg; no trailer: put(obj)); blocks while a bounded queue is full"},
    {"get_msg", (PyCFunction)(void (*)(void))chan_get_msg, METH_FASTCALL | METH_KEYWORDS,
     "get_msg(block=True, timeout=None) -> bytes | Message: the next message as it is (not unpickled)"},
    {"close", chan_close, METH_NOARGS, "Refuse further put/get through this object (ValueError)."},
    {NULL, NULL, 0, NULL},
};

static int chan_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(((Chan *)self)->owner);
    return 0;
}

static int chan_clear(PyObject *self)
{
    Py_CLEAR(((Chan *)self)->owner);
    return 0;
}

static void chan_dealloc(PyObject *self)
{
    PyObject_GC_UnTrack(self);
    if (((Chan *)self)->weakreflist != NULL)
        PyObject_ClearWeakRefs(self);
    chan_clear(self);
    Py_TYPE(self)->tp_free(self); /* a static type: subtype_dealloc drops a subclass's reference */
}

static PyObject *chan_get_closed(PyObject *self, void *closure)
{
    return PyBool_FromLong(((Chan *)self)->closed);
}

static PyObject *chan_get_addr(PyObject *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(((Chan *)self)->addr);
}

static PyObject *chan_get_direct(PyObject *self, void *closure)
{
    return PyBool_FromLong(chan_direct_hdr(&((Chan *)self)->direct) != NULL);
}

static PyObject *chan_get_used(PyObject *self, void *closure)
{
    return PyBool_FromLong(((Chan *)self)->used);
}

static PyGetSetDef chan_getset[] = {
    {"closed", chan_get_closed, NULL, "Whether close() was called.", NULL},
    {"used", chan_get_used, NULL, "Whether put or put_nowait was called.", NULL},
    {"direct", chan_get_direct, NULL,
     "Whether put/get move inline messages on the channel themselves (else always through Go).", NULL},
    {"addr", chan_get_addr, NULL, "The channel's address in the run.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ChanType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dragon_mp._fastpath.Chan",
    .tp_basicsize = sizeof(Chan),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Chan(addr, inline=65536, owner=None, direct=True): put/get of pickled objects on the\n"
              "channel at addr.\n\n"
              "inline must be >= the channel's inline size. direct: send and receive inline\n"
              "messages on the channel in C when uncontended (a channel of this node's pool;\n"
              "False: every call through Go). owner: any object to keep alive as\n"
              "long as this one or one of its bound methods lives (the Python object whose\n"
              "finalizer frees the channel). Needs configure(). Errors and timeouts raise through\n"
              "configure's raise_for (queue.Full / queue.Empty). Supports weak references; subclassable.",
    .tp_dealloc = chan_dealloc,
    .tp_traverse = chan_traverse,
    .tp_clear = chan_clear,
    .tp_weaklistoffset = offsetof(Chan, weakreflist),
    .tp_methods = chan_methods,
    .tp_getset = chan_getset,
    .tp_init = chan_init,
    .tp_new = PyType_GenericNew,
};

/* ---- bind(): any //export function whose arguments are 64-bit integers */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    void *fn;
    PyObject *name;
    int nargs;
    int tidx;           /* index of the timeout argument, -1 none */
    int nogil;          /* release the GIL even for a call that does not wait */
    i64 timed_out;      /* the result that means "the time ran out" */
    char kinds[MAX_ARGS];
} GoFunc;

static i64 call_n(void *fn, int n, const u64 *a)
{
    /* int64_t and uint64_t arguments are passed the same way: one signature per arity. */
    switch (n) {
    case 0: return ((i64(*)(void))fn)();
    case 1: return ((i64(*)(u64))fn)(a[0]);
    case 2: return ((i64(*)(u64, u64))fn)(a[0], a[1]);
    case 3: return ((i64(*)(u64, u64, u64))fn)(a[0], a[1], a[2]);
    case 4: return ((i64(*)(u64, u64, u64, u64))fn)(a[0], a[1], a[2], a[3]);
    case 5: return ((i64(*)(u64, u64, u64, u64, u64))fn)(a[0], a[1], a[2], a[3], a[4]);
    default: return ((i64(*)(u64, u64, u64, u64, u64, u64))fn)(a[0], a[1], a[2], a[3], a[4], a[5]);
    }
}

typedef struct {
    GoFunc *f;
    u64 a[MAX_ARGS];
} gofunc_ctx;

static i64 gofunc_attempt(void *p, i64 timeout)
{
    gofunc_ctx *c = p;
    c->a[c->f->tidx] = (u64)timeout;
    return call_n(c->f->fn, c->f->nargs, c->a);
}

static PyObject *gofunc_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    GoFunc *f = (GoFunc *)self;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    CHECK_READY();
    if (UNLIKELY(kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_Format(PyExc_TypeError, "%U() takes no keyword arguments", f->name);
        return NULL;
    }
    if (UNLIKELY(nargs != f->nargs)) {
        PyErr_Format(PyExc_TypeError, "%U() takes %d arguments (%zd given)", f->name, f->nargs, nargs);
        return NULL;
    }
    gofunc_ctx c;
    c.f = f;
    for (int i = 0; i < f->nargs; i++) {
        if (f->kinds[i] == 'u') {
            if (as_u64(args[i], &c.a[i]) < 0)
                return NULL;
        } else {
            i64 v;
            if (as_i64(args[i], &v) < 0)
                return NULL;
            c.a[i] = (u64)v;
        }
    }
    i64 rc;
    if (f->tidx >= 0 && (i64)c.a[f->tidx] != 0) {
        int raised;
        u64 addr = f->nargs > 0 && f->kinds[0] == 'u' ? c.a[0] : local_node << 48;
        rc = sliced(gofunc_attempt, &c, addr, (i64)c.a[f->tidx], f->timed_out, !f->nogil, &raised);
        if (raised)
            return NULL;
    } else if (f->nogil || (f->nargs > 0 && f->kinds[0] == 'u' && is_remote(c.a[0]))) {
        Py_BEGIN_ALLOW_THREADS
        rc = call_n(f->fn, f->nargs, c.a);
        Py_END_ALLOW_THREADS
    } else {
        rc = call_n(f->fn, f->nargs, c.a);
    }
    return PyLong_FromLongLong(rc);
}

static void gofunc_dealloc(PyObject *self)
{
    Py_XDECREF(((GoFunc *)self)->name);
    PyObject_Free(self);
}

static PyObject *gofunc_repr(PyObject *self)
{
    GoFunc *f = (GoFunc *)self;
    return PyUnicode_FromFormat("<dragon_mp._fastpath.GoFunc %U/%d>", f->name, f->nargs);
}

static PyTypeObject GoFuncType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dragon_mp._fastpath.GoFunc",
    .tp_basicsize = sizeof(GoFunc),
    .tp_dealloc = gofunc_dealloc,
    .tp_vectorcall_offset = offsetof(GoFunc, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_repr = gofunc_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "A Go //export function bound by dragon_mp._fastpath.bind().",
};

PyDoc_STRVAR(bind_doc,
"bind(name, signature, timed_out=0, nogil=False) -> callable\n--\n\n"
"A callable for the //export function `name` of the library given to init(),\n"
"returning its int64 result as an int. signature has one letter per argument\n"
"(at most 6), every argument a 64-bit integer: 'u' uint64 (an address), 'i' int64,\n"
"'t' int64 timeout in ns (<0 forever, 0 do not wait; at most one). A call whose\n"
"timeout is not 0 polls with the GIL held, then waits in <=100 ms slices without\n"
"the GIL, running signal handlers between slices, until the result differs from\n"
"`timed_out` (0 for dmp_sem_acquire-like functions) or the time is up.\n"
"nogil=True: release the GIL for every call (a call that may take long without a\n"
"timeout). Example: bind('dmp_rlock_acquire', 'uut', 0).");

static PyObject *fp_bind(PyObject *mod, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"name", "signature", "timed_out", "nogil", NULL};
    const char *name, *sig;
    long long timed_out = 0;
    int nogil = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ss|Lp:bind", kwlist, &name, &sig, &timed_out, &nogil))
        return NULL;
    CHECK_READY();
    size_t n = strlen(sig);
    if (n > MAX_ARGS) {
        PyErr_Format(PyExc_ValueError, "bind(): at most %d arguments", MAX_ARGS);
        return NULL;
    }
    int tidx = -1;
    for (size_t i = 0; i < n; i++) {
        if (sig[i] == 't') {
            if (tidx >= 0) {
                PyErr_SetString(PyExc_ValueError, "bind(): more than one timeout argument");
                return NULL;
            }
            tidx = (int)i;
        } else if (sig[i] != 'u' && sig[i] != 'i') {
            PyErr_Format(PyExc_ValueError, "bind(): bad signature letter %c (want u, i or t)", sig[i]);
            return NULL;
        }
    }
    void *fn = dlsym(lib_handle, name);
    if (fn == NULL) {
        PyErr_Format(PyExc_AttributeError, "dragon_mp._fastpath: the Go library has no function %s", name);
        return NULL;
    }
    GoFunc *f = PyObject_New(GoFunc, &GoFuncType);
    if (f == NULL)
        return NULL;
    f->vectorcall = gofunc_vectorcall;
    f->fn = fn;
    f->nargs = (int)n;
    f->tidx = tidx;
    f->nogil = nogil;
    f->timed_out = timed_out;
    memcpy(f->kinds, sig, n);
    f->name = PyUnicode_FromString(name);
    if (f->name == NULL) {
        Py_DECREF(f);
        return NULL;
    }
    return (PyObject *)f;
}

/* ---- module */

static PyMethodDef methods[] = {
    {"init", (PyCFunction)fp_init, METH_O, init_doc},
    {"ready", (PyCFunction)fp_ready, METH_NOARGS, ready_doc},
    {"send", (PyCFunction)(void (*)(void))fp_send, METH_FASTCALL, send_doc},
    {"recv", (PyCFunction)(void (*)(void))fp_recv, METH_FASTCALL, recv_doc},
    {"sem_acquire", (PyCFunction)(void (*)(void))fp_sem_acquire, METH_FASTCALL, sem_acquire_doc},
    {"sem_release", (PyCFunction)fp_sem_release, METH_O, sem_release_doc},
    {"last_error", (PyCFunction)fp_last_error, METH_NOARGS, last_error_doc},
    {"pool_base", (PyCFunction)fp_pool_base, METH_NOARGS, pool_base_doc},
    {"bind", (PyCFunction)(void (*)(void))fp_bind, METH_VARARGS | METH_KEYWORDS, bind_doc},
    {"configure", (PyCFunction)(void (*)(void))fp_configure, METH_FASTCALL, configure_doc},
    {"put", (PyCFunction)(void (*)(void))fp_put, METH_FASTCALL, put_doc},
    {"get", (PyCFunction)(void (*)(void))fp_get, METH_FASTCALL, get_doc},
    {"send_obj", (PyCFunction)(void (*)(void))fp_send_obj, METH_FASTCALL, send_obj_doc},
    {"recv_msg", (PyCFunction)(void (*)(void))fp_recv_msg, METH_FASTCALL, recv_msg_doc},
    {"invalidate", (PyCFunction)fp_invalidate, METH_NOARGS, invalidate_doc},
    {"direct_stats", (PyCFunction)fp_direct_stats, METH_NOARGS, direct_stats_doc},
    {"direct_ok", (PyCFunction)fp_direct_ok, METH_NOARGS, direct_ok_doc},
    {"thread_owner", (PyCFunction)fp_thread_owner, METH_NOARGS, thread_owner_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(module_doc,
"Direct C calls into the Go core's //export functions (the data plane), without ctypes.\n\n"
"Call init(so_path) once the gopy library is loaded (dragon_mp._fast.load does).");

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "dragon_mp._fastpath", module_doc, -1, methods,
};

PyMODINIT_FUNC PyInit__fastpath(void)
{
    static int once;
    if (!once) {
        if (pthread_key_create(&buf_key, free) != 0) {
            PyErr_SetString(PyExc_OSError, "dragon_mp._fastpath: pthread_key_create failed");
            return NULL;
        }
        if (pthread_atfork(NULL, NULL, after_fork_in_child) != 0) {
            PyErr_SetString(PyExc_OSError, "dragon_mp._fastpath: pthread_atfork failed");
            return NULL;
        }
        once = 1;
    }
    if (PyType_Ready(&GoFuncType) < 0 || PyType_Ready(&SemType) < 0 || PyType_Ready(&ChanType) < 0 ||
        PyType_Ready(&RLockType) < 0 || PyType_Ready(&EventType) < 0 || PyType_Ready(&MessageType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "WAIT_SLICE_NS", WAIT_SLICE_NS) < 0 ||
        PyModule_AddIntConstant(m, "DEFAULT_INLINE_CAP", DEFAULT_INLINE_CAP) < 0 ||
        PyModule_AddIntConstant(m, "NOGIL_COPY", NOGIL_COPY) < 0 ||
        PyModule_AddType(m, &SemType) < 0 || PyModule_AddType(m, &ChanType) < 0 ||
        PyModule_AddType(m, &GoFuncType) < 0 || PyModule_AddType(m, &RLockType) < 0 ||
        PyModule_AddType(m, &EventType) < 0 || PyModule_AddType(m, &MessageType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

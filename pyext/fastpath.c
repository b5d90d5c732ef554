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
 *     uncontended (keep in sync with gocore/channel; see fastpath_chan.c).
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
 *
 * One translation unit, split by concept (setup.py compiles this file only;
 * the others are #included below, in this order, each using what the ones
 * before it define):
 *   fastpath.c          this file: the Go function table, fork and readiness,
 *                       argument conversion, waiting in slices, the shared
 *                       words' atomics, init() and the module;
 *   layout.h            the shared-memory layout, GENERATED from the Go
 *                       structs (go run ./pyext/internal/layoutgen);
 *   fastpath_chan.c     channels in C (the inline send/receive on the header)
 *                       and the bytes calls send()/recv();
 *   fastpath_pickle.c   configure(): errors and picklers; small and large
 *                       bytes pickles recognised and made in C;
 *   fastpath_objects.c  pickling to parts (large buffers copied once), Message;
 *   fastpath_alloc.c    huge pages for large allocations;
 *   fastpath_queue.c    put()/get() of objects and the Chan type;
 *   fastpath_sync.c     sem_acquire()/sem_release(), Sem, RLock, Event;
 *   fastpath_bind.c     bind(): any //export function of 64-bit integers.
 * Each of them starts with //go:build ignore, as this one (pyext/build.py
 * checks it).
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

#include "layout.h"

typedef int64_t i64;
typedef uint64_t u64;

/* Error codes of pyext/codes.go (the functions return them negated). */
enum { CODE_TIMEOUT = 1, CODE_FULL = 2, CODE_TOOMANYRELEASES = 8, CODE_NOTOWNER = 9 };

#define WAIT_SLICE_NS 100000000LL     /* longest wait with the GIL released between signal checks */
#define NOGIL_COPY 65536              /* copies of at least this many bytes run without the GIL */
#define DEFAULT_INLINE_CAP 65536      /* recv's buffer when the caller gives no capacity */
#define PAYLOAD_MIN 65536             /* CPython's FRAME_SIZE_TARGET: payloads its pickler writes to the file */
#define MAX_ARGS 7                    /* most arguments a bound function may take */

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
static u64 (*go_chan_ptr)(u64 addr);                    /* pyext/fast_exports.go: channels in C */
static u64 (*go_chan_tag)(u64 addr);
static u64 (*go_chan_layout)(u64 *out, u64 n);

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
static u64 (*go_object_tag)(u64 addr);                  /* pyext/fast_exports.go */
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
    {"dmp_chan_ptr", (void **)&go_chan_ptr},
    {"dmp_chan_tag", (void **)&go_chan_tag},
    {"dmp_chan_layout", (void **)&go_chan_layout},
};
#define NSYMBOLS (sizeof SYMBOLS / sizeof SYMBOLS[0])

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

/* Whether addr names another node's object (the address's bits from
 * DMP_ADDR_NODE_SHIFT up are its node). A call on one is a network round trip (or, when that node was
 * just cut off, the seconds it takes to notice), so it never holds the
 * GIL: other threads must go on, and Ctrl-C must be served. */
static inline int is_remote(u64 addr)
{
    return (addr >> DMP_ADDR_NODE_SHIFT) != local_node;
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

/* ---- (block=True, timeout=None) arguments, as stdlib's acquire, put and get take them */

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

/* Parse ([obj,] block=True, timeout=None), positional or keywords, into a Go timeout in ns
 * (<0 forever, 0 do not wait). obj_kw: the name of a leading required argument (stored in
 * *obj), or NULL when there is none. */
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

#include "fastpath_chan.c"
#include "fastpath_pickle.c"
#include "fastpath_objects.c"
#include "fastpath_alloc.c"
#include "fastpath_queue.c"
#include "fastpath_sync.c"
#include "fastpath_bind.c"

/* ---- init */

PyDoc_STRVAR(init_doc,
"init(so_path)\n--\n\n"
"Resolve the Go functions in the ALREADY LOADED gopy library at so_path (the\n"
"path dragon_mp._gobind.load() returns). Never loads it: raises OSError if it is\n"
"not loaded, AttributeError if a required function is missing, RuntimeError if\n"
"its channel layout is not this build's (the two were built apart). Idempotent.");

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
    if (lib_handle != NULL) {
        Py_DECREF(bytes);
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
    /* A library of another build is refused before it is kept: a later init()
     * checks again. The slots set above are not used while not ready. */
    if (chan_layout_check(PyBytes_AS_STRING(bytes)) < 0) {
        dlclose(h);
        Py_DECREF(bytes);
        return NULL;
    }
    Py_DECREF(bytes);
    lib_handle = h;
    {
        const char *node = getenv("DRAGON_MP_NODE");
        local_node = node ? (u64)strtoul(node, NULL, 10) & 0xffffu : 0;
    }
    init_pid = getpid();
    state = ST_READY;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(ready_doc, "ready()\n--\n\nWhether init() succeeded (and this is not a forked child).");

static PyObject *fp_ready(PyObject *mod, PyObject *unused)
{
    return PyBool_FromLong(state == ST_READY);
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

PyDoc_STRVAR(invalidate_doc,
"invalidate()\n--\n\n"
"The run's pool is about to be unmapped: every Sem, RLock, Event and Chan made so far stops touching\n"
"shared memory itself (its calls go through Go, which reports the ended run).");

static PyObject *fp_invalidate(PyObject *mod, PyObject *unused)
{
    epoch++;
    Py_RETURN_NONE;
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

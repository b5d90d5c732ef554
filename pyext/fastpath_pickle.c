//go:build ignore

/*
 * dragon_mp._fastpath, continued: errors and pickling. #included by
 * fastpath.c (one translation unit, split by concept).
 *
 * What it holds: configure(), which hands C the Python side's error mapping
 * (raise_for) and picklers; raise_rc() and require_configured(), used by
 * every call that raises; and the pickles C reads or writes itself, without
 * pickle.dumps/loads: is_plain() (objects pickle.dumps handles exactly as the
 * general pickler would), a small bytes object's pickle, the recognition of a
 * pickled bytes object, and the header of a large-bytes message.
 * fastpath_objects.c pickles everything else to parts; fastpath_queue.c sends
 * and receives the results.
 */

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

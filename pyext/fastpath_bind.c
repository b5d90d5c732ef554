//go:build ignore

/*
 * dragon_mp._fastpath, continued: bind(). #included by fastpath.c (one
 * translation unit, split by concept).
 *
 * What it holds: the GoFunc type, a callable for any //export function of
 * the Go library whose arguments are 64-bit integers, resolved by name at run
 * time; a call with a timeout waits in slices as the dedicated calls do.
 * This is how Python reaches a Go function that needs no C of its own.
 */

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
    case 6: return ((i64(*)(u64, u64, u64, u64, u64, u64))fn)(a[0], a[1], a[2], a[3], a[4], a[5]);
    default: return ((i64(*)(u64, u64, u64, u64, u64, u64, u64))fn)(a[0], a[1], a[2], a[3], a[4], a[5], a[6]);
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
"(at most 7), every argument a 64-bit integer: 'u' uint64 (an address), 'i' int64,\n"
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

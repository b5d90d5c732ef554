//go:build ignore

/*
 * dragon_mp._fastpath, continued: objects on channels. #included by
 * fastpath.c (one translation unit, split by concept), after the channel
 * calls (fastpath_chan.c) and the pickling (fastpath_pickle.c,
 * fastpath_objects.c) it puts together.
 *
 * What it holds: put_obj()/get_obj(), a pickled object sent or received (an
 * inline message in C when the channel allows, a large bytes object gathered
 * into the pool, a large message unpickled straight from the pool), the
 * module-level put()/get(), and the Chan type: a queue endpoint whose
 * put/get/put_nowait/get_nowait/put_with/get_msg are one C call each.
 */


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
        rc = recv_wait(&c, d, timeout, &raised);
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

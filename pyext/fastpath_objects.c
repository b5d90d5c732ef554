//go:build ignore

/*
 * dragon_mp._fastpath, continued: objects holding large buffers. This file is
 * #included by fastpath.c (one translation unit, split by concept); it uses
 * that file's calls into Go and sliced(), send_block_parts() of
 * fastpath_chan.c and the pickling set up by configure() (fastpath_pickle.c).
 *
 * Pickling to parts. An object that holds large buffers (bytes, bytearray,
 * numpy arrays, array.array, anything whose reduction gives a PickleBuffer, in
 * any container) is pickled at protocol 5 by ForkingPickler into a writer that
 * keeps what the pickler writes as a list of parts (dragon_mp.reduction's
 * dumps_parts) instead of one growing buffer. CPython's pickler writes a
 * payload of 64 KiB or more (BINBYTES, BINBYTES8, BYTEARRAY8, BINUNICODE8, a
 * PickleBuffer in band) straight to its file as the object itself, right after
 * the opcodes before it, so the parts reference the payloads without copying
 * them. send_parts() copies the parts once, without the GIL, into the
 * message's pool block: the payload's only copy on the sending side (before:
 * into a BytesIO, which regrows, then into the pool; numpy at protocol 4
 * made a bytes copy first). The message is an ordinary pickle: any unpickler
 * reads it, and the receiver unpickles it straight from the pool block, so the
 * unpickler's copy of a payload into the new bytes, bytearray (numpy's array
 * is made over that bytearray) is the only copy on the receiving side.
 *
 * Alignment. Before each large payload, no-op opcodes (BININT1 0, POP; NONE,
 * POP) are inserted ahead of its opcode so that the payload starts on a
 * 64-byte boundary of the message (pool blocks are aligned): both copies then
 * run on whole cache lines. The opcode and its length are outside any frame
 * (the pickler commits the frame before a payload it writes to the file).
 *
 * Trailers. put_with(obj, trailer) sends the pickle of obj followed by raw
 * bytes, which pickle.loads ignores (it stops at STOP). The Pool's tasks and
 * results carry (job, i[, pid]) so; get_msg() hands such a message over as it
 * is. Every pickle ends with STOP ('.'); a trailer whose last byte is not '.'
 * tells the two apart.
 *
 * Message. A large message taken as it is (get_msg, recv_msg) is a Message: a
 * read-only buffer over its pool block that owns the block. release() frees
 * the block (refused while a view of it is exported); otherwise the last
 * reference does. A Message made before invalidate() (the run's pool is going
 * away) never touches the pool again.
 */

#define PARTS_STACK 8         /* parts handled without an allocation */
#define JOIN_STACK 4096       /* small multi-part messages are joined in a stack buffer */
#define SENDV_MAX_PARTS 64    /* the most parts dmp_sendv takes */
#define OP_BINBYTES8 0x8e
#define OP_BYTEARRAY8 0x96
#define OP_BINUNICODE 0x58
#define OP_BINUNICODE8 0x8d

/* No-op padding: NONE, POP pairs; an odd length starts with BININT1 0, POP. */
static char pad_even[132], pad_odd[132];

static void pad_setup(void)
{
    for (int i = 0; i + 1 < (int)sizeof pad_even; i += 2) {
        pad_even[i] = 'N';
        pad_even[i + 1] = '0';
    }
    pad_odd[0] = 'K';           /* BININT1 0, POP */
    pad_odd[1] = 0;
    pad_odd[2] = '0';
    memcpy(pad_odd + 3, pad_even, sizeof pad_odd - 3);
}

/*
 * Length of the payload opcode and its length field that end the pickler's
 * output part p[0:plen], for a payload of n bytes; 0: none. Such a part is
 * what the pickler flushes before writing a payload itself: [PROTO] [one
 * FRAME, or under FRAME_SIZE_MIN unframed bytes] and then the opcode, outside
 * any frame. Checking that structure (not just the last bytes) keeps a part
 * that only looks like it (a frame the pickler flushed because it reached 64
 * KiB, ending in data that resembles an opcode) from being split.
 */
static u64 payload_head(const unsigned char *p, u64 plen, u64 n)
{
    u64 h = 0;
    if (plen >= 9 && (p[plen - 9] == OP_BINBYTES8 || p[plen - 9] == OP_BYTEARRAY8 ||
                      p[plen - 9] == OP_BINUNICODE8) && le_u64(p + plen - 8, 8) == n)
        h = 9;
    else if (plen >= 5 && (p[plen - 5] == OP_BINBYTES || p[plen - 5] == OP_BINUNICODE) &&
             le_u64(p + plen - 4, 4) == n)
        h = 5;
    if (h == 0)
        return 0;
    u64 pos = 0, end = plen - h;
    if (end >= 2 && p[0] == OP_PROTO)
        pos = 2;
    if (pos + 9 <= end && p[pos] == OP_FRAME) {
        u64 flen = le_u64(p + pos + 1, 8);
        return flen == end - pos - 9 ? h : 0;
    }
    return end - pos < 4 ? h : 0;      /* a frame under FRAME_SIZE_MIN is written unframed */
}

typedef struct {
    u64 addr;
    const void *const *bufs;
    const u64 *lens;
    u64 nparts;
} sendv_n_ctx;

static i64 sendv_n_attempt(void *p, i64 timeout)
{
    sendv_n_ctx *c = p;
    return go_sendv(c->addr, c->bufs, c->lens, c->nparts, timeout);
}

/* Send one contiguous message (in C when d allows); returns the rc, *raised as in sliced(). */
static i64 send_one(u64 addr, chan_direct *d, const void *buf, u64 n, i64 timeout, int *raised)
{
    *raised = 0;
    if (chan_try_send(d, buf, n))
        return 0;
    i64 rc = RC_NOBLOCK;
    if (n >= BLOCK_COPY)
        rc = send_block_parts(addr, &buf, &n, 1, timeout, raised);
    if (rc == RC_NOBLOCK) {
        send_ctx c = {addr, buf, n};
        rc = sliced(send_attempt, &c, addr, timeout, -CODE_FULL, n < NOGIL_COPY, raised);
    }
    return rc;
}

/*
 * Send the parts (a list of bytes-like objects: a pickle, see dumps_parts)
 * followed by tlen trailer bytes as one message, with the alignment padding.
 * Returns the rc (0 sent, <0 error code); -1 with *raised set when a Python
 * exception is set (a part without a buffer, memory, a signal handler).
 */
static i64 send_parts(u64 addr, chan_direct *d, PyObject *parts, const void *trailer, u64 tlen,
                      i64 timeout, int *raised)
{
    *raised = 0;
    Py_ssize_t np = PyList_GET_SIZE(parts);
    Py_buffer vstack[PARTS_STACK];
    const void *bstack[3 * PARTS_STACK + 1];
    u64 lstack[3 * PARTS_STACK + 1];
    Py_buffer *views = vstack;
    const void **bufs = bstack;
    u64 *lens = lstack;
    i64 rc = -1;
    Py_ssize_t nv = 0;
    if (np > PARTS_STACK) {
        views = PyMem_Malloc(np * sizeof *views);
        bufs = PyMem_Malloc((3 * np + 1) * sizeof *bufs);
        lens = PyMem_Malloc((3 * np + 1) * sizeof *lens);
        if (views == NULL || bufs == NULL || lens == NULL) {
            PyErr_NoMemory();
            *raised = 1;
            goto done;
        }
    }
    /* The views keep each part's memory where it is (a bytearray cannot be
     * resized while exported) while it is copied without the GIL. */
    int k = 0, after_payload = 0;
    u64 pos = 0;
    for (; nv < np; nv++) {
        if (PyObject_GetBuffer(PyList_GET_ITEM(parts, nv), &views[nv], PyBUF_SIMPLE) < 0) {
            *raised = 1;
            goto done;
        }
        const char *buf = views[nv].buf;
        u64 n = (u64)views[nv].len;
        /* The pickler's own output and payloads alternate: a payload follows
         * the output that ends with its opcode, never another payload. */
        int payload = 0;
        if (n >= PAYLOAD_MIN && k > 0 && !after_payload) {
            u64 h = payload_head(bufs[k - 1], lens[k - 1], n);
            if (h) {
                payload = 1;
                lens[k - 1] -= h;
                const char *head = (const char *)bufs[k - 1] + lens[k - 1];
                pos -= h;
                u64 pad = (64 - ((pos + h) & 63)) & 63;
                if (pad == 1)
                    pad = 65;
                if (pad) {
                    bufs[k] = (pad & 1) ? pad_odd : pad_even;
                    lens[k++] = pad;
                    pos += pad;
                }
                bufs[k] = head;
                lens[k++] = h;
                pos += h;
            }
        }
        after_payload = payload;
        bufs[k] = buf;
        lens[k++] = n;
        pos += n;
    }
    if (tlen) {
        bufs[k] = trailer;
        lens[k++] = tlen;
        pos += tlen;
    }
    if (k == 1) {
        rc = send_one(addr, d, bufs[0], lens[0], timeout, raised);
    } else if (pos <= JOIN_STACK) {
        char tmp[JOIN_STACK];
        char *p = tmp;
        for (int i = 0; i < k; i++) {
            memcpy(p, bufs[i], lens[i]);
            p += lens[i];
        }
        rc = send_one(addr, d, tmp, pos, timeout, raised);
    } else {
        rc = send_block_parts(addr, bufs, lens, k, timeout, raised);
        if (rc == RC_NOBLOCK && k <= SENDV_MAX_PARTS) {
            sendv_n_ctx c = {addr, bufs, lens, (u64)k};
            rc = sliced(sendv_n_attempt, &c, addr, timeout, -CODE_FULL, 0, raised);
        } else if (rc == RC_NOBLOCK) {
            /* More parts than dmp_sendv takes (another node's channel): joined. */
            char *joined = PyMem_Malloc(pos ? pos : 1);
            if (joined == NULL) {
                PyErr_NoMemory();
                *raised = 1;
                goto done;
            }
            char *p = joined;
            for (int i = 0; i < k; i++) {
                memcpy(p, bufs[i], lens[i]);
                p += lens[i];
            }
            rc = send_one(addr, d, joined, pos, timeout, raised);
            PyMem_Free(joined);
        }
    }
done:
    for (Py_ssize_t i = 0; i < nv; i++)
        PyBuffer_Release(&views[i]);
    if (views != vstack) {
        PyMem_Free(views);
        PyMem_Free(bufs);
        PyMem_Free(lens);
    }
    return *raised ? -1 : rc;
}

/*
 * Pickle obj (plain small objects with pickle.dumps, everything else to parts)
 * and send it with tlen trailer bytes. Returns the rc; -1 with *raised when a
 * Python exception is set (pickling failed: nothing was sent).
 */
static i64 put_obj_rc(u64 addr, chan_direct *d, PyObject *obj, const void *trailer, u64 tlen,
                      i64 timeout, int *raised)
{
    int budget = 256, big = 0;
    PyObject *parts;
    if (is_plain(obj, 4, &budget, &big) && !big) {
        PyObject *a[2] = {obj, plain_protocol};
        PyObject *data = PyObject_Vectorcall(plain_dumps, a, 2, NULL);
        if (data == NULL) {
            *raised = 1;
            return -1;
        }
        parts = PyList_New(1);
        if (parts == NULL) {
            Py_DECREF(data);
            *raised = 1;
            return -1;
        }
        PyList_SET_ITEM(parts, 0, data);
    } else {
        parts = PyObject_CallOneArg(cfg_dumps_parts, obj);
        if (parts == NULL) {
            *raised = 1;
            return -1;
        }
        if (!PyList_Check(parts)) {
            Py_DECREF(parts);
            PyErr_SetString(PyExc_TypeError, "dumps_parts() must return a list");
            *raised = 1;
            return -1;
        }
    }
    i64 rc = send_parts(addr, d, parts, trailer, tlen, timeout, raised);
    Py_DECREF(parts);
    return rc;
}

PyDoc_STRVAR(send_obj_doc,
"send_obj(addr, obj, timeout_ns) -> int\n--\n\n"
"Pickle obj as put() does (large buffers copied once, straight into the pool)\n"
"and send it to the channel at addr: 0, or a negative code (-CLOSED...).\n"
"Pickling errors raise, and then nothing was sent.");

static PyObject *fp_send_obj(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    CHECK_READY();
    if (check_nargs("send_obj", nargs, 3, 3) < 0 || require_configured() < 0)
        return NULL;
    u64 addr;
    i64 timeout;
    if (as_u64(args[0], &addr) < 0 || as_i64(args[2], &timeout) < 0)
        return NULL;
    int raised = 0;
    chan_direct direct;
    i64 rc = put_obj_rc(addr, direct_for(addr, &direct), args[1], NULL, 0, timeout, &raised);
    if (raised)
        return NULL;
    return PyLong_FromLongLong(rc);
}

/* ---- Message: a large message's pool block, owned */

typedef struct {
    PyObject_HEAD
    u64 off, len;           /* the block in the run's pool */
    u64 epoch;              /* epoch when taken: the pool is ours to touch while it holds */
    Py_ssize_t exports;
    char held;              /* not yet freed */
} Message;

static PyTypeObject MessageType;

static int message_live(Message *m)
{
    return m->held && m->epoch == epoch;
}

static void message_free(Message *m)
{
    if (m->held) {
        m->held = 0;
        if (m->epoch == epoch)
            go_release_msg(0, m->off, m->len);
    }
}

static PyObject *message_new(u64 off, u64 len)
{
    Message *m = PyObject_New(Message, &MessageType);
    if (m == NULL) {
        go_release_msg(0, off, len);
        return NULL;
    }
    m->off = off;
    m->len = len;
    m->epoch = epoch;
    m->exports = 0;
    m->held = 1;
    return (PyObject *)m;
}

static int message_getbuffer(PyObject *self, Py_buffer *view, int flags)
{
    Message *m = (Message *)self;
    if (!message_live(m)) {
        PyErr_SetString(PyExc_ValueError, "operation on a released message");
        view->obj = NULL;
        return -1;
    }
    void *p = (void *)(uintptr_t)(go_pool_base() + m->off);
    if (PyBuffer_FillInfo(view, self, p, (Py_ssize_t)m->len, 1, flags) < 0)
        return -1;
    m->exports++;
    return 0;
}

static void message_releasebuffer(PyObject *self, Py_buffer *view)
{
    ((Message *)self)->exports--;
}

static PyBufferProcs message_as_buffer = {message_getbuffer, message_releasebuffer};

static PyObject *message_release(PyObject *self, PyObject *unused)
{
    Message *m = (Message *)self;
    if (m->exports > 0) {
        PyErr_SetString(PyExc_BufferError, "cannot release a message whose memory is exported");
        return NULL;
    }
    message_free(m);
    Py_RETURN_NONE;
}

static PyObject *message_enter(PyObject *self, PyObject *unused)
{
    return Py_NewRef(self);
}

/* Frees the block unless a view of it is still exported (then its last reference will). */
static PyObject *message_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Message *m = (Message *)self;
    if (m->exports == 0)
        message_free(m);
    Py_RETURN_NONE;
}

static Py_ssize_t message_length(PyObject *self)
{
    return (Py_ssize_t)((Message *)self)->len;
}

static void message_dealloc(PyObject *self)
{
    message_free((Message *)self);
    PyObject_Free(self);
}

static PyMethodDef message_methods[] = {
    {"release", message_release, METH_NOARGS,
     "Free the message's pool block now (BufferError while a view of it is exported)."},
    {"__enter__", message_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))message_exit, METH_FASTCALL, NULL},
    {NULL},
};

static PySequenceMethods message_as_sequence = {.sq_length = message_length};

static PyTypeObject MessageType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dragon_mp._fastpath.Message",
    .tp_doc = "A large message taken from a channel: a read-only buffer over the pool block it owns.\n"
              "release() (or the last reference) frees the block.",
    .tp_basicsize = sizeof(Message),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = message_dealloc,
    .tp_as_buffer = &message_as_buffer,
    .tp_as_sequence = &message_as_sequence,
    .tp_methods = message_methods,
};

/* The next message as it is: bytes (inline) or a Message (large); NULL with an
 * exception, or *rc < 0 and NULL without one (timeout, closed...). */
static PyObject *recv_raw(u64 addr, chan_direct *d, i64 timeout, u64 cap, i64 *rc)
{
    recv_ctx c;
    c.addr = addr;
    c.cap = cap;
    c.len = c.off = 0;
    if (chan_direct_hdr(d) != NULL && (c.buf = thread_buffer(cap)) != NULL &&
        chan_try_recv(d, c.buf, cap, &c.len)) {
        *rc = 0;
    } else {
        int raised;
        *rc = recv_wait(&c, d, timeout, &raised);
        if (raised)
            return NULL;
    }
    if (*rc == RC_NOMEM)
        return PyErr_NoMemory();
    if (*rc == 0)
        return PyBytes_FromStringAndSize(c.buf, (Py_ssize_t)c.len);
    if (*rc == 1)
        return message_new(c.off, c.len);
    return NULL;
}

PyDoc_STRVAR(recv_msg_doc,
"recv_msg(addr, timeout_ns, inline_cap=65536) -> bytes | Message | int\n--\n\n"
"Take the next message of the channel at addr as it is: bytes when inline, a\n"
"Message (a buffer owning its pool block) when large, or a negative code.");

static PyObject *fp_recv_msg(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    CHECK_READY();
    if (check_nargs("recv_msg", nargs, 2, 3) < 0)
        return NULL;
    u64 addr;
    i64 timeout, cap = DEFAULT_INLINE_CAP, rc;
    if (as_u64(args[0], &addr) < 0 || as_i64(args[1], &timeout) < 0 ||
        (nargs > 2 && as_i64(args[2], &cap) < 0))
        return NULL;
    if (cap < 0) {
        PyErr_SetString(PyExc_ValueError, "recv_msg(): negative inline_cap");
        return NULL;
    }
    chan_direct direct;
    PyObject *r = recv_raw(addr, direct_for(addr, &direct), timeout, (u64)cap, &rc);
    if (r != NULL || PyErr_Occurred())
        return r;
    return PyLong_FromLongLong(rc);
}

//go:build ignore

/*
 * dragon_mp._fastpath, continued: synchronization objects. #included by
 * fastpath.c (one translation unit, split by concept); raises through
 * raise_rc() (fastpath_pickle.c).
 *
 * What it holds: the module-level sem_acquire()/sem_release(), and the types
 * Sem (a semaphore, stdlib SemLock-like), RLock and Event, whose steps that
 * never wait are atomics on the shared words of gocore/shmsync's Semaphore,
 * RecursiveLock and Event (their layout: dmp_semaphore, dmp_rlock and
 * dmp_event of layout.h; their protocol: KEEP IN SYNC with gocore/shmsync),
 * and whose waits go through Go in slices. Also thread_owner(), an RLock
 * owner's identity.
 */

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

/* ---- Sem: a semaphore with C methods (acquire, release), stdlib SemLock-like */

/*
 * The semaphore is gocore/shmsync.Semaphore (semaphore.go), whose words are
 * dmp_semaphore of layout.h (generated from it). KEEP IN SYNC WITH
 * gocore/shmsync/semaphore.go:
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
    dmp_semaphore *word;         /* the shmsync.Semaphore; NULL: everything through Go */
    u64 epoch;
    obj_guard guard;
    unsigned long last_tid;      /* thread of the last acquire here */
    long count;                  /* acquires minus releases in this process (stdlib's count) */
    PyObject *owner;             /* kept alive as long as this object (and its bound methods) */
    PyObject *weakreflist;
} Sem;

static inline dmp_semaphore *sem_word(Sem *s)
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
    dmp_semaphore *w = sem_word(s);
    i64 timeout = -1;
    if (nargs != 0 || kwnames != NULL) {
        if (block_timeout("acquire", args, nargs, kwnames, NULL, NULL, &timeout) < 0)
            return NULL;
    }
    i64 rc;
    if (w != NULL && try_acquire(&w->count))
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
    dmp_semaphore *w = sem_word(s);
    if (w != NULL) {
        /* shmsync.Semaphore.Release */
        uint32_t c = LOAD(&w->count);
        for (;;) {
            uint32_t max = LOAD(&w->max);
            if ((max != 0 && c >= max) || c == UINT32_MAX)
                return raise_rc(-CODE_TOOMANYRELEASES);
            if (CAS(&w->count, &c, c + 1))
                break;
        }
        if (LOAD(&w->waiters) != 0)
            futex_wake(&w->count, 1);
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
 * steps that never wait run here as atomics on the shared words (dmp_rlock and
 * dmp_event of layout.h, generated from the Go structs), exactly as there;
 * waiting goes through Go (dmp_rlock_acquire, dmp_event_wait).
 *
 * RecursiveLock {state, waiters, count, spin, owner}:
 *   acquire: owner == me: count++ (refused at UINT32_MAX); else CAS state 0 -> 1,
 *            then store owner = me, count = 1;
 *   release: owner != me: NOTOWNER; count > 1: count--; else count = 0,
 *            owner = 0, state = 0, then FUTEX_WAKE(state, 1) only when waiters != 0.
 * Event {state (bit 0 set, bits 31..1 set counter), waiters}:
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
    void *word;                  /* the shmsync struct (dmp_rlock, dmp_event); NULL: everything through Go */
    u64 epoch;
    obj_guard guard;
    PyObject *owner;             /* kept alive as long as this object (and its bound methods) */
    PyObject *weakreflist;
} ShObj;

static inline void *obj_word(ShObj *o)
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
    dmp_rlock *w = obj_word(o);
    if (w != NULL) {
        u64 *owner = &w->owner;
        if (LOAD(owner) == me) {          /* only this thread stores `me` there */
            uint32_t n = LOAD(&w->count);
            if (n == UINT32_MAX)
                Py_RETURN_FALSE;
            STORE(&w->count, n + 1);
            Py_RETURN_TRUE;
        }
        uint32_t free_ = 0;
        if (CAS(&w->state, &free_, 1)) {
            STORE(owner, me);
            STORE(&w->count, 1);
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
    dmp_rlock *w = obj_word(o);
    if (w != NULL) {
        u64 *owner = &w->owner;
        if (LOAD(owner) != me)
            return raise_rc(-CODE_NOTOWNER);
        uint32_t n = LOAD(&w->count);
        if (n > 1) {
            STORE(&w->count, n - 1);
            Py_RETURN_NONE;
        }
        STORE(&w->count, 0);
        STORE(owner, 0);
        STORE(&w->state, 0);
        if (LOAD(&w->waiters) != 0)
            futex_wake(&w->state, 1);
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
    dmp_event *w = obj_word(o);
    if (w == NULL) {
        PyObject *r = event_go(go_event_set, "dmp_event_set", o->addr);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
        Py_RETURN_NONE;
    }
    uint32_t s = LOAD(&w->state);
    for (;;) {
        if (s & 1)
            Py_RETURN_NONE;
        if (CAS(&w->state, &s, (s + 2) | 1))
            break;
    }
    if (LOAD(&w->waiters) != 0)
        futex_wake(&w->state, FUTEX_WAKE_ALL);
    Py_RETURN_NONE;
}

static PyObject *event_clear(PyObject *self, PyObject *unused)
{
    ShObj *o = (ShObj *)self;
    CHECK_READY();
    dmp_event *w = obj_word(o);
    if (w == NULL) {
        PyObject *r = event_go(go_event_clear, "dmp_event_clear", o->addr);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
        Py_RETURN_NONE;
    }
    uint32_t s = LOAD(&w->state);
    while (s & 1) {
        if (CAS(&w->state, &s, s & ~1u))
            break;
    }
    Py_RETURN_NONE;
}

static PyObject *event_is_set(PyObject *self, PyObject *unused)
{
    ShObj *o = (ShObj *)self;
    CHECK_READY();
    dmp_event *w = obj_word(o);
    if (w == NULL) {
        PyObject *r = event_go(go_event_is_set, "dmp_event_is_set", o->addr);
        if (r == NULL)
            return NULL;
        int set = PyLong_AsLong(r) != 0;
        Py_DECREF(r);
        return PyBool_FromLong(set);
    }
    return PyBool_FromLong(LOAD(&w->state) & 1);
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
    dmp_event *w = obj_word(o);
    if (w != NULL && (LOAD(&w->state) & 1))
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

//go:build ignore

/*
 * dragon_mp._fastpath, continued: channels. #included by fastpath.c (one
 * translation unit, split by concept); uses its Go function table, sliced()
 * and the shared words' atomics.
 *
 * What it holds: the uncontended send and receive of an inline message done
 * in C on the channel header itself (chan_try_send, chan_try_recv: the part
 * that must be kept in sync with gocore/channel, on the layout of layout.h),
 * the check of that layout at init(), the address cache of the module-level
 * calls, and the bytes calls send()/recv() with their large-message paths
 * (payloads copied into and out of the pool with libc's memcpy, without the
 * GIL). Pickling is not here: see fastpath_pickle.c and fastpath_queue.c.
 */

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
 * The header's layout is pyext/layout.h, generated from gocore/channel's
 * struct; init() compares it with the loaded library's channel.Layout()
 * (dmp_chan_layout) and refuses to start on any difference (chan_layout_check).
 */

static u64 direct_stats[4];       /* sends, receives done here; sends, receives handed to Go (GIL held) */
static uint32_t lock_pid;         /* this process's mutex word (shmsync.Mutex: the pid) */

/*
 * Check at init() that the loaded Go library lays channels out as this build
 * does (DMP_CHAN_LAYOUT, from layout.h). Both are built from the same sources
 * by one setup.py run, and go test fails while layout.h is stale, so a
 * difference can only mean a build mismatch: an extension left from another
 * build next to a rebuilt Go library, or the reverse. Going through Go for
 * every channel would hide that (and Sem, RLock and Event, whose structs
 * layout.h also describes, cannot be checked at run time at all), so it is an
 * error: RuntimeError naming the word and what to rebuild. -1 with it set.
 */
static int chan_layout_check(const char *so_path)
{
    static const u64 want[DMP_CHAN_LAYOUT_WORDS] = DMP_CHAN_LAYOUT;
    u64 got[DMP_CHAN_LAYOUT_WORDS];
    memset(got, 0, sizeof got);
    u64 n = go_chan_layout(got, DMP_CHAN_LAYOUT_WORDS);
    size_t i = 0;
    while (n == DMP_CHAN_LAYOUT_WORDS && i < DMP_CHAN_LAYOUT_WORDS && got[i] == want[i])
        i++;
#define REBUILD " The two come from different builds: rebuild both from one source tree " \
                "(python setup.py build_ext --inplace, or reinstall dragon_mp)."
    if (n != DMP_CHAN_LAYOUT_WORDS) {
        PyErr_Format(PyExc_RuntimeError,
                     "dragon_mp._fastpath does not match the Go library %s: its channel layout "
                     "(channel.Layout) has %llu words, this build's (pyext/layout.h) %d." REBUILD,
                     so_path, (unsigned long long)n, DMP_CHAN_LAYOUT_WORDS);
        return -1;
    }
    if (i < DMP_CHAN_LAYOUT_WORDS) {
        PyErr_Format(PyExc_RuntimeError,
                     "dragon_mp._fastpath does not match the Go library %s: word %zu of its channel "
                     "layout (channel.Layout) is %llu, this build's (pyext/layout.h) %llu." REBUILD,
                     so_path, i, (unsigned long long)got[i], (unsigned long long)want[i]);
        return -1;
    }
#undef REBUILD
    lock_pid = (uint32_t)getpid();
    if (lock_pid == 0 || (lock_pid & DMP_MUTEX_CONTENDED)) {
        /* Linux pids stay below 2^22; shmsync.Mutex (Go's too) needs bit 31 free. */
        PyErr_Format(PyExc_RuntimeError, "dragon_mp._fastpath: pid %u does not fit shmsync.Mutex's word",
                     (unsigned)lock_pid);
        return -1;
    }
    return 0;
}

/* Where a Chan's channel lives in this process; hdr NULL: everything through Go. */
typedef struct {
    dmp_chan_header *hdr;
    char *base;                  /* the pool mapping: chunk offsets are relative to it */
    u64 epoch;
    u64 tag;                     /* the channel's tag (Go's handle's): another one in hdr is a reuse */
} chan_direct;

static void chan_direct_init(chan_direct *d, u64 addr)
{
    d->hdr = NULL;
    d->base = NULL;
    d->epoch = epoch;
    if (state != ST_READY)
        return;
    u64 p = go_chan_ptr(addr), base = go_pool_base(), tag = go_chan_tag(addr);
    /* The header is at the address's offset in the pool (runtime.Address:
     * its low DMP_ADDR_OFFSET_BITS bits are the offset >> DMP_ADDR_UNIT_SHIFT).
     * A handle whose tag is no longer the header's (the channel's memory
     * reused since) is stale: through Go, which says so. */
    if (p == 0 || base == 0 || p % 8 != 0 ||
        p - base != (addr & ((1ULL << DMP_ADDR_OFFSET_BITS) - 1)) << DMP_ADDR_UNIT_SHIFT ||
        LOAD(&((dmp_chan_header *)(uintptr_t)p)->tag) != tag)
        return;
    d->hdr = (dmp_chan_header *)(uintptr_t)p;
    d->base = (char *)(uintptr_t)base;
    d->tag = tag;
}

static inline dmp_chan_header *chan_direct_hdr(chan_direct *d)
{
    if (d == NULL)
        return NULL;
    if (UNLIKELY(d->hdr != NULL && d->epoch != epoch))
        d->hdr = NULL;
    return d->hdr;
}

/* shmsync.Mutex.TryLock */
static inline int chan_trylock(dmp_chan_header *h)
{
    uint32_t free_ = 0;
    return CAS(&h->mu, &free_, lock_pid);
}

/* shmsync.Mutex.Unlock */
static inline void chan_unlock(dmp_chan_header *h)
{
    if (__atomic_exchange_n(&h->mu, 0, __ATOMIC_SEQ_CST) & DMP_MUTEX_CONTENDED)
        futex_wake(&h->mu, 1);
}

static inline u64 *chunk_next(char *base, u64 chunk)
{
    return (u64 *)(base + chunk + DMP_CHAN_CHUNK_OFF_NEXT);
}

static inline char *chan_slot(char *base, dmp_chan_header *h, u64 chunk, u64 idx)
{
    return base + chunk + DMP_CHAN_CHUNK_HEADER + idx * (u64)h->slot_size;
}

/*
 * Send the n bytes at buf as one inline message. 1: sent; 0: not done here,
 * nothing changed (send through Go). Keeps the GIL: a few hundred ns at most.
 */
static int chan_try_send(chan_direct *d, const void *buf, u64 n)
{
    dmp_chan_header *h = chan_direct_hdr(d);
    if (h == NULL || n >= NOGIL_COPY)       /* a long copy: through Go, without the GIL */
        return 0;
    if (LOAD(&h->magic) != DMP_CHAN_MAGIC || n > h->inline_ || LOAD(&h->closed) != 0 || !chan_trylock(h)) {
        direct_stats[2]++;
        return 0;
    }
    char *base = d->base;
    int done = 0, wake = 0;
    if (LOAD(&h->magic) == DMP_CHAN_MAGIC && h->tag == d->tag && h->closed == 0 && n <= h->inline_ &&
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
            *(u64 *)(s + DMP_CHAN_SLOT_OFF_LEN) = n;
            *(uint32_t *)(s + DMP_CHAN_SLOT_OFF_FLAGS) = 0;
            memcpy(s + DMP_CHAN_SLOT_HEADER, buf, n);
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
    dmp_chan_header *h = chan_direct_hdr(d);
    if (h == NULL)
        return 0;
    if (LOAD(&h->magic) != DMP_CHAN_MAGIC || LOAD(&h->count) == 0 || !chan_trylock(h)) {
        direct_stats[3]++;
        return 0;
    }
    char *base = d->base;
    int done = 0, wake = 0;
    if (LOAD(&h->magic) == DMP_CHAN_MAGIC && h->tag == d->tag && h->count > 0) {
        u64 head = h->head, idx = h->head_idx;
        char *s = chan_slot(base, h, head, idx);
        u64 n = *(u64 *)(s + DMP_CHAN_SLOT_OFF_LEN);
        uint32_t flags = *(uint32_t *)(s + DMP_CHAN_SLOT_OFF_FLAGS);
        u64 left = h->count - 1;
        int retire = left == 0 || idx + 1 == h->chunk_slots;
        if (!(flags & DMP_CHAN_FLAG_LARGE) && n <= h->inline_ && n <= cap && n < NOGIL_COPY &&
            (!retire || h->spare == 0)) {
            memcpy(dst, s + DMP_CHAN_SLOT_HEADER, n);
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
 *
 * A caller gets a copy of the entry, on its own stack: an entry is replaced by
 * the next lookup of another address that hashes to it, which another thread
 * makes whenever this one lets the GIL go (a wait, or Python code run by a
 * pickle). A pointer into the cache kept across that would then name the other
 * channel, and a receive would take that channel's message (found as lost exit
 * codes of remote Pool workers: 300 threads each waiting on its own channel
 * lost ~1% of the messages to each other's waits).
 */
#define DIRECT_CACHE 64             /* a power of two: direct_for takes the top 6 bits of a product */

static struct {
    u64 addr;
    chan_direct d;
} direct_cache[DIRECT_CACHE];

/* Where the channel at addr lives, copied into *out; NULL when not here (through Go). GIL held. */
static chan_direct *direct_for(u64 addr, chan_direct *out)
{
    if (addr == 0)
        return NULL;
    /* Fibonacci hashing of the whole address (offset, generation, node): channels made one after
     * the other sit 2 units apart, and the offset alone bucketed 32 of them together. */
    size_t i = (size_t)((addr * 0x9E3779B97F4A7C15ULL) >> 58);      /* 64 = 2^6 entries */
    if (direct_cache[i].addr != addr || direct_cache[i].d.epoch != epoch) {
        chan_direct_init(&direct_cache[i].d, addr);
        direct_cache[i].addr = addr;
    }
    *out = direct_cache[i].d;
    return chan_direct_hdr(out) != NULL ? out : NULL;
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
    chan_direct direct;
    if (c.n < NOGIL_COPY && chan_try_send(direct_for(c.addr, &direct), c.buf, c.n))
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

/* Whether a receiver of the channel has something to do: a message, or the close. */
static inline int chan_ready(dmp_chan_header *h)
{
    return LOAD(&h->count) != 0 || LOAD(&h->closed) != 0 || LOAD(&h->magic) != DMP_CHAN_MAGIC;
}

/*
 * Sleep on the channel's "not empty" word for at most ns, in C, by
 * gocore/channel's protocol (recv.go): count this waiter in neWaiters, read
 * neSeq, then sleep only while nothing is there. Every put and the close bump
 * neSeq before they read neWaiters, so a message that lands after the look
 * changes the word and the futex returns at once. Spurious returns are
 * fine: the caller looks again.
 */
static void chan_idle_wait(dmp_chan_header *h, i64 ns)
{
    __atomic_add_fetch(&h->ne_waiters, 1, __ATOMIC_SEQ_CST);
    uint32_t seq = LOAD(&h->ne_seq);
    if (!chan_ready(h)) {
        struct timespec ts = {.tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL};
        syscall(SYS_futex, &h->ne_seq, FUTEX_WAIT, seq, &ts, NULL, 0);   /* shared word */
    }
    __atomic_sub_fetch(&h->ne_waiters, 1, __ATOMIC_SEQ_CST);
}

/*
 * Receive on a channel of this node, waiting at most total_ns (<0 forever),
 * as sliced(recv_attempt, ...) does. A wait that has been idle for a whole
 * slice (in this call, or in the call before on this thread and channel:
 * callers wait in slices and look around between them) goes on in C: it
 * sleeps on the channel's futex word and calls into Go only when the
 * channel has something (or has something it cannot take yet). Why: every
 * call into Go wakes Go's sysmon thread, which then polls every 20 us for a
 * while: an idle child blocked in recv() cost ~600 thread wake-ups and ~1.6%
 * of a CPU a second, and 250 idle children took the whole of a 2-CPU
 * machine (issue 17). The first slice of a wait stays Go's, which spins
 * before it sleeps (a reply in a ping-pong comes within microseconds; a
 * futex wake-up costs tens). Signal handlers run between slices, as in
 * sliced(). d: the channel's direct view, or NULL (then it is sliced()).
 */
#define IDLE_CONTINUE_NS 50000000LL   /* a wait this soon after one timed out continues it */

static __thread u64 idle_addr;         /* the channel this thread's last wait timed out on */
static __thread i64 idle_at;           /* when */

static i64 recv_wait(recv_ctx *c, chan_direct *d, i64 total_ns, int *raised)
{
    dmp_chan_header *h = d != NULL ? chan_direct_hdr(d) : NULL;
    if (h == NULL || total_ns == 0)
        return sliced(recv_attempt, c, c->addr, total_ns, -CODE_TIMEOUT, 1, raised);
    i64 start = now_ns();
    i64 deadline = total_ns < 0 ? -1 : start + total_ns;
    i64 rc;
    if (!(idle_addr == c->addr && start - idle_at < IDLE_CONTINUE_NS)) {
        /* The first slice: Go's wait (spin, then sleep). */
        i64 first = total_ns < 0 || total_ns > WAIT_SLICE_NS ? WAIT_SLICE_NS : total_ns;
        rc = sliced(recv_attempt, c, c->addr, first, -CODE_TIMEOUT, 1, raised);
        if (*raised || rc != -CODE_TIMEOUT) {
            idle_addr = 0;
            return rc;
        }
    }
    *raised = 0;
    for (;;) {
        i64 slice = WAIT_SLICE_NS;
        if (deadline >= 0) {
            i64 left = deadline - now_ns();
            if (left <= 0 && !chan_ready(h)) {
                idle_addr = c->addr;
                idle_at = now_ns();
                return -CODE_TIMEOUT;
            }
            if (left < slice)
                slice = left > 0 ? left : 0;
        }
        if (chan_ready(h)) {
            idle_addr = 0;
            if ((c->buf = thread_buffer(c->cap)) != NULL && chan_try_recv(d, c->buf, c->cap, &c->len))
                return 0;
            rc = recv_attempt(c, 0);            /* a poll: the GIL stays */
            if (rc != -CODE_TIMEOUT)
                return rc;
            /* There but not takeable yet (a large message being written): Go waits. */
            Py_BEGIN_ALLOW_THREADS
            rc = recv_attempt(c, slice > 0 ? slice : 0);
            Py_END_ALLOW_THREADS
            if (rc != -CODE_TIMEOUT)
                return rc;
        } else if (slice > 0) {
            Py_BEGIN_ALLOW_THREADS
            chan_idle_wait(h, slice);
            Py_END_ALLOW_THREADS
        }
        if (PyErr_CheckSignals() < 0) {
            *raised = 1;
            return 0;
        }
    }
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
    chan_direct direct, *d = direct_for(c.addr, &direct);
    if (d != NULL && (c.buf = thread_buffer(c.cap)) != NULL && chan_try_recv(d, c.buf, c.cap, &c.len)) {
        rc = 0;
    } else {
        int raised;
        rc = recv_wait(&c, d, timeout, &raised);
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

PyDoc_STRVAR(direct_ok_doc,
"direct_ok() -> bool\n--\n\n"
"Whether channels may be used from C: init() succeeded (it refuses a Go library whose channel\n"
"layout differs from this build's) and this is not a forked child.");

static PyObject *fp_direct_ok(PyObject *mod, PyObject *unused)
{
    return PyBool_FromLong(state == ST_READY);
}

"""Conformance of the two implementations of the channel and lock protocols, under contention.

The shared-memory channel protocol (gocore/channel: header, mutex, ne_seq/nf_seq sequence words,
waiter counts, a chunked slot ring with a spare chunk, large messages in pool blocks, dead-holder
takeover of the mutex) and the lock protocols (gocore/shmsync Semaphore and RecursiveLock) are
implemented twice: in Go, and for the steps that never wait, in C (pyext/fastpath.c:
chan_try_send/chan_try_recv, the Sem and RLock types). Each implementation has its own tests
(test_fastpath.py mixes them on small cases); these run both at once, on the same objects, from
several processes, at volume, and check what a program relies on.

How each implementation is forced, without touching library code:

- Channel, C: `_fastpath.send(addr, data, timeout)` / `_fastpath.recv(addr, timeout, cap)`.
  An inline message (payload <= the channel's inline size) goes through chan_try_send/
  chan_try_recv when the mutex CAS succeeds; anything else (contention, large, full, empty, a
  chunk to allocate or free) is handed to Go. `_fastpath.direct_stats()` counts both, per
  process: (sends done in C, receives done in C, sends handed to Go, receives handed to Go).
- Channel, Go: the exports `dmp_send` / `dmp_recv` / `dmp_release_msg` called through
  `_fastpath.bind` (a plain call of the Go function): always gocore/channel, never C's steps.
  The gopy facade has no send/recv (control plane only).
- Locks, C: the fast path's `Sem` / `RLock` objects (the bound acquire/release of a dragon_mp
  Lock, Semaphore, RLock): `acquire(False)` and `release()` are atomics on the shared words and
  never call Go (`direct` says so); a blocking `acquire()` tries C first and waits in Go.
- Locks, Go: the module-level `_fastpath.sem_acquire` / `sem_release` and
  `_fastpath.bind('dmp_rlock_acquire' / 'dmp_rlock_release')` call the Go exports
  (shmsync.Semaphore, shmsync.RecursiveLock) for every step.

Every message carries (producer, sequence, length, CRC-32): consumers check it is intact and that
each producer's messages come in order (FIFO); the parent, that each arrived exactly once. Sizes
are random around the channel's inline size (read from the channel), large ones in pool blocks;
unbounded channels are kept thousands deep: the queue spans many chunks, the spare is reused.

Seeds: DRAGON_MP_CONFORM_SEED (default below) seeds every size sequence and kill point; each test
prints it, and its failures name it. DRAGON_MP_CONFORM_MESSAGES overrides MESSAGES.
"""

import array
import ctypes
import functools
import os
import queue
import random
import signal
import struct
import time
import zlib

import pytest

import dragon_mp as mp
from dragon_mp import _core, _runtime, synchronize

# Messages over all channel runs of one default run of this file (the kill test adds its own).
MESSAGES = int(os.environ.get('DRAGON_MP_CONFORM_MESSAGES', 1_000_000))
# Acquisitions per acquirer in the lock test.
LOCK_ROUNDS = 100_000
SEED = int(os.environ.get('DRAGON_MP_CONFORM_SEED', 1818))

HEAD = struct.Struct('<IIII')       # producer, sequence, length of the whole message, CRC-32
SENTINEL = 0xffffffff               # producer id of the parent's "no more" messages
LARGE = (65536, 300_000)            # pool-block sizes copied by C (fastpath's BLOCK_COPY and up)
BLOB = 1 << 20                      # random bytes message bodies are cut from
DEEP = 4000                         # unbounded channels: producers pause above this many queued
WAIT_NS = 100_000_000               # consumers wait in slices of this
# A loaded machine makes everything slower, not wrong: the parent fails a run only when no
# process made progress for STALL seconds; the children's own limits are longer.
STALL = 60.0
SEND_TIMEOUT_NS = int(5 * STALL * 1e9)
IDLE_LIMIT = 5 * STALL

TIMEOUT = -_core.TIMEOUT

# gocore/channel header offsets (doc.go's layout; C checks the same at init)
H_MU, H_INLINE, H_CHUNK_SLOTS, H_HEAD, H_TAIL, H_CHUNKS = 12, 32, 40, 72, 88, 112

def fast():
    _runtime.current()
    fp = _core.fast()
    assert fp is not None, 'dragon_mp._fastpath is not built'
    return fp


# ---- messages

def blob(seed):
    return random.Random(seed).randbytes(BLOB)


def sizes_for(seed, inline, n):
    """n message sizes (>= HEAD.size) around `inline`: inline ones (C may move them), the
    three boundaries, a band either side, pool blocks just above, and large ones."""
    rng = random.Random(seed)
    lo = HEAD.size
    out = array.array('I')
    for _ in range(n):
        r = rng.random()
        if r < 0.35:
            s = rng.randint(lo, inline)
        elif r < 0.65:
            s = inline + rng.choice((-1, 0, 1))
        elif r < 0.93:
            s = rng.randint(inline - 32, inline + 32)
        elif r < 0.998:
            s = rng.randint(inline + 1, 4 * inline)
        else:
            s = rng.randint(*LARGE)
        out.append(max(s, lo))
    return out


def make_message(body, producer, seq, size):
    n = size - HEAD.size
    off = (seq * 7919 + producer * 104729) % (BLOB - n)
    part = body[off:off + n]
    head = struct.pack('<III', producer, seq, size)
    return head + zlib.crc32(part, zlib.crc32(head)).to_bytes(4, 'little') + part


def check_message(msg):
    """(producer, seq) of an intact message, else raises AssertionError naming what is wrong."""
    if len(msg) < HEAD.size:
        raise AssertionError(f'message of {len(msg)} bytes, shorter than its header')
    producer, seq, size, crc = HEAD.unpack_from(msg)
    if size != len(msg):
        raise AssertionError(f'producer {producer} seq {seq}: {len(msg)} bytes, header says {size}')
    view = memoryview(msg)
    if zlib.crc32(view[HEAD.size:], zlib.crc32(view[:12])) != crc:
        raise AssertionError(f'producer {producer} seq {seq} ({size} bytes): checksum mismatch')
    return producer, seq


# ---- the two implementations of send and recv

def channel_ops(mode, seed=0):
    """(send, recv) of one mode. 'c': the C fast path (C when it can, Go for the rest); 'go':
    the exports dmp_send/dmp_recv called through _fastpath.bind, always gocore/channel (bind
    only loops over the Go call in <=100 ms slices); 'mixed': a seeded coin per call."""
    fp = fast()
    base, cap = fp.pool_base(), 1 << 16
    send = fp.bind('dmp_send', 'uuut', -_core.FULL)
    recv = fp.bind('dmp_recv', 'uuutuu', TIMEOUT)
    release = fp.bind('dmp_release_msg', 'uuu')
    buf = ctypes.create_string_buffer(cap)
    n, off = ctypes.c_uint64(), ctypes.c_uint64()
    args = ctypes.addressof(buf), cap
    outs = ctypes.addressof(n), ctypes.addressof(off)

    def go_send(addr, msg, timeout_ns):        # msg: bytes, read in place
        return send(addr, ctypes.cast(msg, ctypes.c_void_p).value or 0, len(msg), timeout_ns)

    def go_recv(addr, timeout_ns):
        rc = recv(addr, *args, timeout_ns, *outs)
        if rc == 1:                     # large: handed over in its pool block, freed here
            data = ctypes.string_at(base + off.value, n.value)
            assert release(addr, off.value, n.value) == 0
            return data
        return ctypes.string_at(buf, n.value) if rc == 0 else rc

    def c_recv(addr, timeout_ns):
        return fp.recv(addr, timeout_ns, cap)
    if mode != 'mixed':
        return (fp.send, c_recv) if mode == 'c' else (go_send, go_recv)
    bits = random.Random(seed).getrandbits
    return (lambda a, m, t: (fp.send if bits(1) else go_send)(a, m, t),
            lambda a, t: (c_recv if bits(1) else go_recv)(a, t))


# ---- channel processes

def producer(addr, pid, mode, n, seed, inline, out, begin, progress):
    """Send messages 0..n-1 of producer `pid` (n < 0: until killed) once `begin` is set,
    keeping progress[pid] = messages sent, then report to `out`."""
    fp = fast()
    gocore = _core.gocore()
    send, _ = channel_ops(mode, seed + pid)
    body = blob(seed)
    sizes = sizes_for(seed * 1000 + pid, inline, abs(n) if n > 0 else 200_000)
    error, seq = None, 0
    try:
        assert begin.wait(120), 'never told to begin'
        while seq != n:
            # keep an unbounded channel a few thousand deep: many chunks, bounded memory
            if seq % 128 == 0 and _core.call(gocore.ChannelLen, addr) > DEEP:
                time.sleep(0.002)
                continue
            msg = make_message(body, pid, seq, sizes[seq % len(sizes)])
            rc = send(addr, msg, SEND_TIMEOUT_NS)
            if rc != 0:
                error = f'producer {pid} ({mode}): send of seq {seq} returned {rc}'
                break
            seq += 1
            progress[pid] = seq
    except Exception as e:          # reported, so that the parent names the seed
        error = f'producer {pid} ({mode}): {e!r}'
    out.put(('producer', pid, mode, seq, fp.direct_stats(), error))


def consumer(addr, cid, mode, seed, out, progress):
    """Take messages until a sentinel; check each one and each producer's order."""
    fp = fast()
    _, recv = channel_ops(mode, seed + 1000 + cid)
    seqs, last, errors, taken = {}, {}, [], 0
    idle_since = time.monotonic()
    try:
        while True:
            m = recv(addr, WAIT_NS)
            if isinstance(m, int):          # TIMEOUT: nothing yet, for at most IDLE_LIMIT
                if m != TIMEOUT or time.monotonic() - idle_since > IDLE_LIMIT:
                    errors.append(f'consumer {cid} ({mode}): recv {m} after {taken} messages')
                    break
                continue
            idle_since = time.monotonic()
            # on a bad message keep taking (the first 10 are reported): a consumer that
            # stopped would leave producers blocked on a bounded channel
            try:
                p, s = check_message(m)
            except AssertionError as e:
                if len(errors) < 10:
                    errors.append(f'consumer {cid} ({mode}) message {taken}: {e}')
                continue
            if p == SENTINEL:
                break
            taken += 1
            progress[cid] = taken
            if s <= last.get(p, -1) and len(errors) < 10:
                errors.append(f'consumer {cid} ({mode}): producer {p} seq {s} after {last[p]}')
            last[p] = s
            seqs.setdefault(p, array.array('I')).append(s)
    except Exception as e:
        errors.append(f'consumer {cid} ({mode}): {e!r}')
    seqs = {p: a.tobytes() for p, a in seqs.items()}
    out.put(('consumer', cid, mode, seqs, fp.direct_stats(), errors))


def header_word(fp, addr, off, ctype=ctypes.c_uint64):
    ptr = fp.bind('dmp_chan_ptr', 'u')(addr)
    assert ptr != 0, 'not a channel of this node'
    return ctype.from_address(ptr + off)


def reap(procs):
    for p in procs:
        if p.exitcode is None:
            p.kill()
            p.join(10)


class Stall:
    """Fails a run in which no process made progress for STALL seconds, naming the seed
    (where()), everyone's progress and the shared object's state; a slow run goes on."""

    def __init__(self, where, progress, state):
        self.where, self.progress, self.state = where, progress, state
        self.last, self.since = None, time.monotonic()

    def check(self):
        now, snap = time.monotonic(), self.progress()
        if snap != self.last:
            self.last, self.since = snap, now
        elif now - self.since > STALL:
            raise AssertionError(f'{self.where()} no progress for {STALL} s: {snap}; '
                                 f'{self.state()}')

    def collect(self, out, count):
        """count reports from out, waiting as long as something progresses."""
        reports = []
        while len(reports) < count:
            try:
                reports.append(out.get(timeout=0.5))
                self.since = time.monotonic()
                continue
            except queue.Empty:
                pass
            self.check()                # outside the handler: no "during handling" chain
        return reports


class ChannelRun:
    """One channel, its producer and consumer processes, and the checks of what arrived."""

    def __init__(self, name, capacity, inline, seed):
        self.fp = fast()
        self.gocore = _core.gocore()
        self.name, self.capacity, self.seed = name, capacity, seed
        self.addr = _core.call(self.gocore.ChannelCreate, capacity, inline)
        self.inline = _core.call(self.gocore.ChannelInline, self.addr)
        word = functools.partial(header_word, self.fp, self.addr)
        # the inline size C reads from the header (doc.go: +32) is the one Go reports
        assert word(H_INLINE, ctypes.c_uint32).value == self.inline
        self.chunk_slots = word(H_CHUNK_SLOTS, ctypes.c_uint32).value
        self.mu = word(H_MU, ctypes.c_uint32)
        self.chunks, self.head, self.tail = word(H_CHUNKS), word(H_HEAD), word(H_TAIL)
        self.out = mp.Queue()
        self.begin = mp.Event()         # producers start together, once all are up
        self.procs = []
        self.max_chunks = self.max_count = self.links = 0

    def where(self):
        return (f'[{self.name}: seed={self.seed} capacity={self.capacity} inline={self.inline} '
                f'chunk_slots={self.chunk_slots}]')

    def start(self, target, *args):
        p = mp.Process(target=target, args=args)
        p.start()
        self.procs.append(p)
        return p

    def sample(self):
        """Unlocked reads of a moving header: statistics, not checks of a state."""
        for _ in range(200):            # a burst: a short queue spans two chunks only briefly
            head, tail = self.head.value, self.tail.value
            self.links += head != tail and head != 0 and tail != 0
        self.max_chunks = max(self.max_chunks, self.chunks.value)
        self.max_count = max(self.max_count, _core.call(self.gocore.ChannelLen, self.addr))

    def run(self, producers, consumers, n, victims=()):
        """producers: modes, n messages each; victims: (mode, kill_after) sending until
        SIGKILLed once they reported kill_after sent. Returns the reports by kind and
        (pid, mode, messages it reported sent) of each killed producer."""
        npro = len(producers) + len(victims)
        sent, taken = mp.RawArray('q', npro), mp.RawArray('q', len(consumers))
        for cid, mode in enumerate(consumers):
            self.start(consumer, self.addr, cid, mode, self.seed, self.out, taken)
        modes = list(producers) + [mode for mode, after in victims]
        procs = [self.start(producer, self.addr, pid, mode, n if pid < len(producers) else -1,
                            self.seed, self.inline, self.out, self.begin, sent)
                 for pid, mode in enumerate(modes)]
        pending = {len(producers) + k: after for k, (mode, after) in enumerate(victims)}
        killed = []
        self.begin.set()
        stall = Stall(self.where, lambda: (list(sent), list(taken)), self.state)
        while pending or any(p.exitcode is None for p in procs[:len(producers)]):
            self.sample()
            for pid, after in list(pending.items()):
                if sent[pid] >= after:
                    p = procs[pid]
                    os.kill(p.pid, signal.SIGKILL)
                    p.join(30)
                    # informational: a kill that landed inside the channel lock
                    inside = self.mu.value & 0x7fffffff == p.pid
                    print(f'{self.where()} killed producer {pid} ({modes[pid]}) after {sent[pid]} '
                          f'sent{", holding the channel mutex" if inside else ""}')
                    killed.append((pid, modes[pid], sent[pid]))
                    del pending[pid]
            stall.check()
            time.sleep(0.005)
        sentinel = make_message(blob(0), SENTINEL, 0, HEAD.size)
        for _ in consumers:
            assert self.fp.send(self.addr, sentinel, SEND_TIMEOUT_NS) == 0, self.where()
        reports = {'producer': {}, 'consumer': {}}
        for kind, ident, *rest in stall.collect(self.out, len(producers) + len(consumers)):
            reports[kind][ident] = rest
        for p in self.procs:
            p.join(60)
            assert p.exitcode is not None, f'{self.where()} {p} did not end'
        return reports, killed

    def state(self):
        h = self.fp.bind('dmp_chan_ptr', 'u')(self.addr)
        words = (ctypes.c_uint32 * 8).from_address(h + 44)     # closed, ne/nf seq and waiters
        return (f'count {_core.call(self.gocore.ChannelLen, self.addr)} mutex {self.mu.value:#x} '
                f'closed/neSeq/neWaiters/nfSeq/nfWaiters {list(words)[:5]}')

    def check(self, reports, n, killed=()):
        where = self.where()
        prod, cons = reports['producer'], reports['consumer']
        for cid, (mode, seqs, stats, errors) in cons.items():
            assert not errors, f'{where} ' + '\n'.join(errors)
        for pid, (mode, sent, stats, error) in prod.items():
            assert error is None, f'{where} {error}'
            assert sent == n, f'{where} producer {pid} sent {sent} of {n}'
        got = {}
        for cid, (mode, seqs, stats, errors) in cons.items():
            for p, raw in seqs.items():
                got.setdefault(p, array.array('I')).frombytes(raw)
        for pid in prod:
            seqs = sorted(got.pop(pid, ()))
            if seqs != list(range(n)):
                missing = sorted(set(range(n)) - set(seqs))[:10]
                dups = len(seqs) - len(set(seqs))
                raise AssertionError(f'{where} producer {pid}: {len(seqs)} of {n} delivered, '
                                     f'{dups} duplicates, first missing {missing}')
        for pid, mode, reported in killed:
            seqs = sorted(got.pop(pid, ()))
            k = len(seqs)
            # a gap-free prefix; the one in flight when the kill landed may be in or out
            assert seqs == list(range(k)) and reported <= k <= reported + 1, \
                (f'{where} killed producer {pid} ({mode}) reported {reported} sent, '
                 f'{k} delivered, first ones out of place: '
                 f'{[s for i, s in enumerate(seqs) if s != i][:10]}')
        assert not got, f'{where} messages of unknown producers {sorted(got)}'

    def check_paths(self, reports):
        """Both implementations did real work on this channel, across chunk ends."""
        where, prod, cons = self.where(), reports['producer'], reports['consumer']
        # direct_stats: (sends in C, receives in C, sends handed to Go, receives handed to Go)
        c = [sum(r[2][i] for r in rs.values() if r[0] != 'go')
             for i, rs in enumerate((prod, cons, prod, cons))]
        go_sends = sum(r[1] for r in prod.values() if r[0] == 'go')
        go_recvs = sum(len(raw) // 4 for r in cons.values() if r[0] == 'go'
                       for raw in r[1].values())
        print(f'{where} C sent {c[0]}, received {c[1]}, handed Go {c[2]} sends, {c[3]} receives; '
              f'Go-only producers sent {go_sends}, consumers received {go_recvs}; deepest '
              f'{self.max_count}, most chunks {self.max_chunks}, seen across a link {self.links}x')
        assert all(c), f'{where} C moved nothing or handed nothing to Go: {c}'
        assert go_sends or all(r[0] != 'go' for r in prod.values()), where
        assert go_recvs or all(r[0] != 'go' for r in cons.values()), where
        # How often the moving queue spanned chunks is printed above (sampled, so not a
        # check); test_c_and_go_cross_chunk_links makes every crossing happen.

    def finish(self):
        """The channel is left drained, unlocked, owning its one spare chunk, and usable."""
        where = self.where()
        assert _core.call(self.gocore.ChannelLen, self.addr) == 0, where
        assert self.mu.value == 0, f'{where} mutex word {self.mu.value:#x} after the run'
        assert self.chunks.value == 1, f'{where} {self.chunks.value} chunks when drained'
        (gs, gr), (cs, cr) = channel_ops('go'), channel_ops('c')
        msg = make_message(blob(1), 7, 7, self.inline)
        assert cs(self.addr, msg, 0) == 0 and gr(self.addr, 0) == msg, where
        assert gs(self.addr, msg, 0) == 0 and cr(self.addr, 0) == msg, where

    def close(self):
        reap(self.procs)
        _core.call(self.gocore.ChannelRelease, self.addr)


# name, capacity, inline (0: the default), producer modes, consumer modes, share of MESSAGES
CHANNELS = [
    ('unbounded-default', 0, 0, ('c', 'go', 'c', 'go'), ('c', 'go'), 0.35),
    ('bounded-300-inline-1000', 300, 1000, ('c', 'go', 'mixed'), ('c', 'go', 'mixed'), 0.25),
    ('unbounded-inline-4000', 0, 4000, ('c', 'go', 'mixed'), ('c', 'mixed'), 0.25),
    ('bounded-5-inline-64', 5, 64, ('c', 'go', 'mixed'), ('go', 'c'), 0.15),
]


@pytest.mark.parametrize('name,capacity,inline,producers,consumers,share', CHANNELS,
                         ids=[c[0] for c in CHANNELS])
def test_channel_c_and_go_concurrently(name, capacity, inline, producers, consumers, share):
    seed = SEED + [c[0] for c in CHANNELS].index(name)
    n = max(int(MESSAGES * share) // len(producers), 1)
    print(f'seed={seed} (DRAGON_MP_CONFORM_SEED={SEED}) messages={n * len(producers)}')
    run = ChannelRun(name, capacity, inline, seed)
    try:
        reports, _ = run.run(producers, consumers, n)
        run.check(reports, n)
        run.check_paths(reports)
        run.finish()
    finally:
        run.close()


@pytest.mark.parametrize('capacity', [0, 5])
@pytest.mark.parametrize('sender,receiver', [('c', 'go'), ('go', 'c'), ('c', 'c'), ('go', 'go')])
def test_c_and_go_cross_chunk_links(sender, receiver, capacity):
    """Each side links a new chunk (taking the spare or allocating), follows a link and
    retires a chunk, while the other side reads or writes the same ring: made to happen
    here, step by step, where the concurrent runs above only sample it."""
    gocore = _core.gocore()
    fp = fast()
    send, _ = channel_ops(sender)
    _, recv = channel_ops(receiver)
    addr = _core.call(gocore.ChannelCreate, capacity, 64)
    try:
        word = functools.partial(header_word, fp, addr)
        slots = word(H_CHUNK_SLOTS, ctypes.c_uint32).value
        head, tail, chunks = word(H_HEAD), word(H_TAIL), word(H_CHUNKS)
        sent = received = 0

        def put(k):
            nonlocal sent
            for _ in range(k):
                assert send(addr, b'%08d' % sent, 0) == 0, 'send %d' % sent
                sent += 1

        def get(k):
            nonlocal received
            for _ in range(k):
                got = recv(addr, 1_000_000_000)
                assert got == b'%08d' % received, (got, received)
                received += 1

        rounds = 3 if capacity == 0 else 1
        put(min(slots, capacity or slots))      # the first chunk full
        get(1)
        put(1)                                  # the sender links a second chunk
        assert head.value != tail.value, 'head and tail in one chunk after a link'
        if capacity == 0:
            put(rounds * slots)                 # and more: chunks allocated past the spare
            assert chunks.value >= 3, chunks.value
        get(sent - received)                    # the receiver follows every link and retires
        assert head.value == tail.value == 0 and chunks.value == 1, (head.value, tail.value, chunks.value)
        assert isinstance(recv(addr, 0), int), 'data from an empty channel'   # empty: a code, not bytes
    finally:
        _core.call(gocore.ChannelRelease, addr)


# ---- killed holders: a channel's mutex is taken over

def hold_channel_mutex(addr, ready):
    """Take the channel mutex as C does (CAS 0 -> pid; here a plain store on an idle channel,
    which nobody else touches yet) and stay inside the critical section until SIGKILLed."""
    word = header_word(fast(), addr, H_MU, ctypes.c_uint32)
    assert word.value == 0
    word.value = os.getpid()
    ready.set()
    time.sleep(600)


def test_channel_survives_killed_senders():
    """A process killed holding the channel mutex (deterministically, before the run), then two
    producers (one C, one Go) SIGKILLed at seeded points of their send loops while C and Go
    producers and consumers run: the mutex is taken over, the others' messages all arrive
    exactly once in order, each killed producer's form a gap-free prefix."""
    seed = SEED + 100
    rng = random.Random(seed)
    n = max(MESSAGES // 20, 1000)
    victims = [('c', rng.randint(n // 8, n // 2)), ('go', rng.randint(n // 8, n // 2))]
    print(f'seed={seed} (DRAGON_MP_CONFORM_SEED={SEED}) messages={3 * n}+ kills after {victims}')
    run = ChannelRun('killed-senders', 0, 0, seed)
    try:
        ready = mp.Event()
        holder = run.start(hold_channel_mutex, run.addr, ready)
        assert ready.wait(60)
        assert run.mu.value == holder.pid
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(30)
        reports, killed = run.run(('c', 'go', 'mixed'), ('c', 'go'), n, victims)
        # each victim's own report never came: it was killed
        assert all(pid not in reports['producer'] for pid, mode, sent in killed)
        run.check(reports, n, killed)
        assert reports['consumer'][0][2][3] > 0, 'C receives were never handed to Go'
        run.finish()
    finally:
        run.close()


# ---- locks: C and Go acquirers of one lock

class LockOps:
    """The two implementations of one dragon_mp lock in this process: C (the fast path's Sem or
    RLock methods: atomics on the shared words; try() never calls Go, wait() waits in Go) and
    Go (dmp_sem_* / dmp_rlock_*, for every step)."""

    def __init__(self, lock):
        fp = fast()
        addr = lock._addr
        if isinstance(lock, synchronize.RLock):
            c = lock._fast
            acquire = fp.bind('dmp_rlock_acquire', 'uut', 0)
            release = fp.bind('dmp_rlock_release', 'uu')
            me = fp.thread_owner()
            self.go_try = lambda: acquire(addr, me, 0) == 1
            self.go_wait = lambda: acquire(addr, me, SEND_TIMEOUT_NS) == 1
            self.go_release = lambda: release(addr, me)
        else:
            c = lock._sem
            self.go_try = lambda: fp.sem_acquire(addr, 0) == 1
            self.go_wait = lambda: fp.sem_acquire(addr, SEND_TIMEOUT_NS) == 1
            self.go_release = lambda: fp.sem_release(addr)
        assert c is not None and c.direct, 'the lock is not in C'
        self.c_try = lambda: c.acquire(False)
        self.c_wait = lambda: c.acquire(timeout=IDLE_LIMIT)
        self.c_release = c.release


def acquirer(lock, counter, inside, last, progress, ident, mode, rounds, barrier, out):
    """Increment `counter` under the lock `rounds` times, acquiring and releasing through
    'c' (C's try until it succeeds, C's release: never Go), 'c-wait' (C's acquire: C, then
    waits in Go) or 'go' (Go only). An RLock is taken twice each round, the second time
    through the other implementation (the recursion count is shared).
    `inside` holds the identity of whoever is in the critical section: a second one there
    is caught at once, a lost update at the end. `last` names the previous holder: takeovers
    from another acquirer show that they ran interleaved. progress[ident - 1]: rounds done."""
    error = None
    misses = takeovers = overlaps = 0
    recursive = isinstance(lock, synchronize.RLock)
    try:
        ops = LockOps(lock)
        release = ops.go_release if mode == 'go' else ops.c_release
        inner = (ops.c_try, ops.c_release) if mode == 'go' else (ops.go_try, ops.go_release)
        barrier.wait(IDLE_LIMIT)
        for i in range(rounds):
            if mode == 'c':
                while not ops.c_try():
                    misses += 1
                    os.sched_yield()
            else:
                assert (ops.c_wait if mode == 'c-wait' else ops.go_wait)(), 'no lock in time'
            holder = inside.value
            if holder != 0 and overlaps < 10:       # counted, not raised: others wait on us
                overlaps += 1
                error = f'acquirer {ident} ({mode}) got the lock while {holder} held it'
            inside.value = ident
            if last.value != ident:
                takeovers += 1
                last.value = ident
            if recursive:
                assert inner[0](), 'the holder could not take its RLock again'
                counter.value = counter.value + 1
                assert not inner[1]()
            else:
                counter.value = counter.value + 1
            inside.value = 0
            assert not release()
            os.sched_yield()        # let a waiter in: hand-overs between C and Go, not runs
            progress[ident - 1] = i + 1
    except Exception as e:
        error = f'acquirer {ident} ({mode}): {e!r}'
    out.put((ident, mode, misses, takeovers, error))


LOCKS = {
    'Lock': lambda: mp.Lock(),
    'Semaphore(1)': lambda: mp.Semaphore(1),
    'RLock': lambda: mp.RLock(),
}


@pytest.mark.parametrize('kind', sorted(LOCKS))
def test_lock_c_and_go_concurrently(kind):
    fast()
    lock = LOCKS[kind]()
    counter, inside, last = mp.RawValue('q', 0), mp.RawValue('q', 0), mp.RawValue('q', 0)
    out = mp.Queue()
    modes = ('c', 'c-wait', 'go')
    barrier = mp.Barrier(len(modes))
    progress = mp.RawArray('q', len(modes))
    procs = [mp.Process(target=acquirer, args=(lock, counter, inside, last, progress,
                                               i + 1, m, LOCK_ROUNDS, barrier, out))
             for i, m in enumerate(modes)]
    stall = Stall(lambda: f'[{kind}]', lambda: list(progress),
                  lambda: f'counter {counter.value}, in {inside.value}')
    try:
        for p in procs:
            p.start()
        reports = sorted(stall.collect(out, len(procs)))
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
    finally:
        reap(procs)
    errors = [r[4] for r in reports if r[4]]
    assert not errors, '\n'.join(errors)
    print(f'{kind}: {len(modes) * LOCK_ROUNDS} acquisitions; the C-only acquirer missed '
          f'{reports[0][2]} times; takeovers from another acquirer: '
          f'{ {r[1]: r[3] for r in reports} }')
    assert counter.value == len(modes) * LOCK_ROUNDS, \
        f'{kind}: {len(modes) * LOCK_ROUNDS - counter.value} lost updates'
    # they ran interleaved: each took the lock over from another one many times
    assert all(r[3] >= 100 for r in reports), f'{kind}: acquirers hardly overlapped: {reports}'
    assert lock.acquire(False)                              # left free
    lock.release()


# ---- killed holders: a lock stays held

def hold_lock(lock, mode, ready):
    ops = LockOps(lock)
    assert (ops.go_try if mode == 'go' else ops.c_try)()
    ready.set()
    time.sleep(600)


@pytest.mark.parametrize('kind', ['Lock', 'RLock'])
@pytest.mark.parametrize('mode', ['c', 'go'])
def test_lock_of_a_killed_holder_stays_held(kind, mode):
    """What dragon_mp documents (docs/design.md "A lock held on a lost node", gocore/shmsync
    Semaphore and RecursiveLock): a process that dies holding a Lock or RLock does not give
    it back, as under stdlib (POSIX semaphores): C and Go acquirers time out alike, whichever
    implementation the holder used. A Lock may be released by any process (stdlib's too),
    and then the next acquirer, C or Go, gets it; an RLock only by its owner."""
    fast()
    lock = LOCKS[kind]()
    ready = mp.Event()
    p = mp.Process(target=hold_lock, args=(lock, mode, ready))
    p.start()
    try:
        assert ready.wait(60)
        os.kill(p.pid, signal.SIGKILL)
        p.join(30)
    finally:
        reap([p])
    ops = LockOps(lock)
    assert not ops.c_try() and not ops.go_try()
    start = time.monotonic()
    assert lock.acquire(timeout=0.3) is False               # C, then waiting in Go
    assert time.monotonic() - start >= 0.25
    if kind == 'RLock':
        with pytest.raises(AssertionError):
            lock.release()                                  # not ours, C says
        assert ops.go_release() == -_core.NOTOWNER          # nor Go
        assert not ops.c_try()
        return
    assert lock._get_value() == 0
    lock.release()                                          # a survivor gives it back
    assert ops.go_try()                                     # Go gets it
    assert not ops.c_try()
    assert ops.go_release() == 0
    assert ops.c_try()                                      # and C
    lock.release()
    assert lock._get_value() == 1

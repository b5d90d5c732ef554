"""dragon_mp._fastpath: channels in C (chan_try_send/chan_try_recv), inline
messages without calling Go, against Go on the same channel (see test_fastpath.py)."""

import collections
import ctypes
import os
import queue
import random
import signal
import threading
import time

import pytest

import dragon_mp as mp
from dragon_mp import _core, _fast

from conftest import chan

TIMEOUT, FULL = -_core.TIMEOUT, -_core.FULL


# ---- channels in C (chan_try_send/chan_try_recv): inline messages without calling Go


def go_send(addr, data, timeout_ns=0):
    """dmp_send through _fastpath.bind: always Go."""
    buf = ctypes.create_string_buffer(data, len(data))
    return _fast.bound('dmp_send', 'uuut', FULL)(addr, ctypes.addressof(buf), len(data), timeout_ns)


def go_recv(fp, addr, timeout_ns=0, cap=65536):
    """dmp_recv through _fastpath.bind: always Go. bytes, or a negative code."""
    buf = ctypes.create_string_buffer(max(cap, 1))
    n, off = ctypes.c_uint64(), ctypes.c_uint64()
    rc = _fast.bound('dmp_recv', 'uuutuu', TIMEOUT)(addr, ctypes.addressof(buf), cap, timeout_ns,
                                                    ctypes.addressof(n), ctypes.addressof(off))
    if rc == 0:
        return buf.raw[:n.value]
    if rc == 1:
        data = ctypes.string_at(fp.pool_base() + off.value, n.value)
        assert _fast.bound('dmp_release_msg', 'uuu')(addr, off.value, n.value) == 0
        return data
    return rc


def go_chan(fp, q):
    """A Chan on q's channel whose put/get always go through Go."""
    c = fp.Chan(chan(q), q._channel._inline, q._channel, direct=False)
    assert not c.direct
    return c


def raw_message(i, size):
    """size bytes that name their index (boundaries and order show)."""
    head = i.to_bytes(4, 'little')
    return (head * (size // 4 + 1))[:size]


def mutex_word(fp, addr):
    """The channel's shmsync.Mutex word (header +12) in this process."""
    ptr = fp.bind('dmp_chan_ptr', 'u')(addr)
    assert ptr != 0
    return ctypes.c_uint32.from_address(ptr + 12)


def dead_pid():
    p = mp.Process(target=int)
    p.start()
    p.join()
    return p.pid


def test_chan_direct_setup(fp):
    assert fp.direct_ok()
    q = mp.Queue()
    assert q._fast.direct
    assert not go_chan(fp, q).direct
    # runtime.Address: node 63..48, generation 47..36, offset / 64 in 35..0
    assert fp.bind('dmp_chan_ptr', 'u')(chan(q)) == fp.pool_base() + ((chan(q) & (1 << 36) - 1) << 6)
    assert fp.bind('dmp_chan_ptr', 'u')(12345) == 0
    assert not fp.Chan(12345).direct                   # not a channel: everything through Go
    remote = (1 << 48) | (chan(q) & (1 << 48) - 1)     # another node's address: never in C
    assert fp.bind('dmp_chan_ptr', 'u')(remote) == 0
    assert not fp.Chan(remote).direct


@pytest.mark.parametrize('inline', [0, 16])
def test_raw_messages_c_and_go_interleaved(fp, inline):
    """Every mix of C/Go sender and receiver, lengths 0..inline+1 and large, bursts
    that grow the queue over several chunks (Go allocates, C uses the spare) and
    drain it (C keeps the spare, Go frees the rest): every message whole and in order."""
    from dragon_mp import _runtime
    _runtime.current()
    gc = _core.gocore()
    addr = _core.call(gc.ChannelCreate, 0, inline)
    try:
        inl = _core.call(gc.ChannelInline, addr)
        rng = random.Random(inline)
        sizes = [0, 1, inl - 1, inl, inl + 1, 4 * inl, 70000]
        before = fp.direct_stats()
        expect = collections.deque()
        sent = 0
        for burst in [1, 2, 1, 5, 300, 1, 1500, 3, 2500, 1, 7]:
            for _ in range(burst):
                size = rng.choice(sizes) if rng.random() < 0.3 else rng.randrange(inl + 1)
                msg = raw_message(sent, size)
                rc = fp.send(addr, msg, 0) if rng.random() < 0.5 else go_send(addr, msg)
                assert rc == 0
                expect.append(msg)
                sent += 1
            keep = rng.randrange(3)
            while len(expect) > keep:
                got = fp.recv(addr, 0, 65536) if rng.random() < 0.5 else go_recv(fp, addr)
                assert got == expect.popleft()
        while expect:
            assert fp.recv(addr, 0, 65536) == expect.popleft()
        assert fp.recv(addr, 0) == TIMEOUT and go_recv(fp, addr) == TIMEOUT
        after = fp.direct_stats()
        assert after[0] > before[0] and after[1] > before[1]        # C did sends and receives
        assert after[2] > before[2] and after[3] > before[3]        # and handed some to Go
        assert _core.call(gc.ChannelLen, addr) == 0
    finally:
        _core.call(gc.ChannelRelease, addr)


def test_raw_exact_sizes_c_to_go_and_back(fp):
    q = mp.Queue()
    addr, inl = chan(q), q._channel._inline
    for size in [0, 1, 15, 16, 17, 63, 64, 65, inl - 1, inl, inl + 1]:
        msg = raw_message(size, size)
        s0 = fp.direct_stats()
        assert fp.send(addr, msg, 0) == 0
        assert fp.direct_stats()[0] == s0[0] + (size <= inl)         # C sent the inline ones
        assert go_recv(fp, addr) == msg
        assert go_send(addr, msg) == 0
        s1 = fp.direct_stats()
        assert fp.recv(addr, 0, inl) == msg
        assert fp.direct_stats()[1] == s1[1] + (size <= inl)
    # an inline message that does not fit the caller's buffer stays queued (Go reports it)
    assert fp.send(addr, b'abcdef', 0) == 0
    assert isinstance(fp.recv(addr, 0, 3), int)
    assert fp.recv(addr, 0, 6) == b'abcdef'


def test_chunk_ends_hand_over_between_c_and_go(fp):
    """A bounded queue's chunk has maxsize slots: every few messages the tail and
    head cross a chunk end, in C (spare) or in Go (allocate/free)."""
    for maxsize in (1, 2, 3, 5):
        q = mp.Queue(maxsize)
        g = go_chan(fp, q)
        rng = random.Random(maxsize)
        n = 0
        expect = []
        for _ in range(400):
            if len(expect) < maxsize and (not expect or rng.random() < 0.55):
                (q.put if rng.random() < 0.5 else g.put)(n)
                expect.append(n)
                n += 1
            else:
                assert (q.get if rng.random() < 0.5 else g.get)(timeout=5) == expect.pop(0)
        with pytest.raises(queue.Full):
            for _ in range(maxsize + 1):
                q.put_nowait(-1)
        with pytest.raises(queue.Full):
            g.put_nowait(-1)


def test_bounded_full_wakes_a_go_sender_from_c(fp):
    q = mp.Queue(2)
    q.put(1)
    q.put(2)
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.05)
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    done = threading.Event()

    def blocked_put():
        q.put(3)                       # waits in Go (nfWaiters); a C get must wake it
        done.set()

    t = threading.Thread(target=blocked_put)
    t.start()
    time.sleep(0.1)
    assert not done.is_set()
    assert q.get() == 1                # C
    t.join(10)
    assert done.is_set()
    assert [q.get(), q.get()] == [2, 3]


def test_c_put_wakes_a_go_receiver(fp):
    q = mp.Queue()
    got = []
    t = threading.Thread(target=lambda: got.append(q.get(timeout=10)))
    t.start()
    time.sleep(0.1)                    # asleep on neSeq in Go
    s0 = fp.direct_stats()
    q.put('wake')
    assert fp.direct_stats()[0] == s0[0] + 1
    t.join(10)
    assert got == ['wake']


def test_closed_channel_c_and_go(fp):
    a, b = mp.Pipe()
    addr = b._rch._addr
    for i in range(3):
        assert fp.send(addr, raw_message(i, 10), 0) == 0      # C, into b's read channel
    a.close()                                                  # closes both channels
    assert fp.send(addr, b'late', 0) == -_core.CLOSED          # C sees closed: Go reports it
    assert go_send(addr, b'late') == -_core.CLOSED
    assert fp.recv(addr, 0) == raw_message(0, 10)              # drained first, in C
    assert go_recv(fp, addr) == raw_message(1, 10)
    assert b.recv_bytes() == raw_message(2, 10)
    assert fp.recv(addr, 0) == -_core.CLOSED
    with pytest.raises(EOFError):
        b.recv_bytes()
    c = fp.Chan(addr, b._rch._inline, b)
    assert c.direct
    with pytest.raises(ValueError):
        c.put(1)
    with pytest.raises(ValueError):
        c.get_nowait()


def test_pipe_messages_c_both_ways(fp):
    a, b = mp.Pipe()
    s0 = fp.direct_stats()
    for size in (0, 1, 64, 256, 257, 100000):
        a.send_bytes(raw_message(size, size))
        assert b.recv_bytes() == raw_message(size, size)
        b.send((size, 'x'))
        assert a.recv() == (size, 'x')
    s1 = fp.direct_stats()
    assert s1[0] - s0[0] >= 8 and s1[1] - s0[1] >= 8


def _chan_producer(q, k, n, direct):
    # direct None: the Queue's own put (what a program calls).
    fp = _core.fast()
    if direct is None:
        c = q
    else:
        c = fp.Chan(q._channel._addr, q._channel._inline, q._channel, direct=direct)
        assert c.direct == direct
    for i in range(n):
        c.put((k, i, b'p' * (i % 300)))   # some pickles are inline, some large


def _chan_consumer(q, out, direct):
    fp = _core.fast()
    c = q if direct is None else fp.Chan(q._channel._addr, q._channel._inline, q._channel,
                                          direct=direct)
    got = []
    while True:
        m = c.get(timeout=60)
        if m is None:
            break
        got.append(m[:2])
        assert m[2] == b'p' * (m[1] % 300)
    out.put(got)


def _run_mix(fp, q, producers, consumers, n):
    out = mp.Queue()
    procs = [mp.Process(target=_chan_producer, args=(q, k, n, d)) for k, d in enumerate(producers)]
    cons = [mp.Process(target=_chan_consumer, args=(q, out, d)) for d in consumers]
    try:
        for p in procs + cons:
            p.start()
        for p in procs:
            p.join(120)
            assert p.exitcode == 0
        for _ in cons:
            q.put(None)
        results = [out.get(timeout=120) for _ in cons]
        for p in cons:
            p.join(60)
            assert p.exitcode == 0
    finally:
        for p in procs + cons:
            if p.exitcode is None:
                p.kill()
    every = sorted(m for r in results for m in r)
    assert every == sorted((k, i) for k in range(len(producers)) for i in range(n))
    for r in results:                    # FIFO per producer, as each consumer sees it
        for k in range(len(producers)):
            seq = [i for kk, i in r if kk == k]
            assert seq == sorted(seq)


@pytest.mark.parametrize('producer,consumer', [(True, False), (False, True), (True, None), (None, True)])
def test_c_and_go_in_separate_processes(fp, producer, consumer):
    _run_mix(fp, mp.Queue(), [producer], [consumer], 4000)


@pytest.mark.parametrize('maxsize', [0, 7])
def test_many_producers_and_consumers_c_and_go(fp, maxsize):
    _run_mix(fp, mp.Queue(maxsize), [True, False, True], [True, False], 3000)


def test_dead_holder_lock_is_taken_over_when_c_falls_back(fp):
    """A channel mutex left held by a dead process: C's CAS fails, Go's lock
    notices the dead holder (after ~100 ms) and takes it over."""
    q = mp.Queue()
    word = mutex_word(fp, chan(q))
    q.put('queued')
    for op in ('put', 'get', 'send', 'recv'):
        word.value = dead_pid()
        s0 = fp.direct_stats()
        if op == 'put':
            q.put('after')
            assert q.get() == 'queued'
            assert q.get() == 'after'
            q.put('queued')
        elif op == 'get':
            assert q.get(timeout=10) == 'queued'
            q.put('queued')
        elif op == 'send':
            assert fp.send(chan(q), b'raw', 0) == 0
            assert q.get() == 'queued'
            assert fp.recv(chan(q), 0) == b'raw'
            q.put('queued')
        else:
            assert isinstance(fp.recv(chan(q), 10**10), bytes)
            q.put('queued')
        s1 = fp.direct_stats()
        assert s1[2] + s1[3] > s0[2] + s0[3]           # C handed the locked channel to Go
        assert word.value == 0


def _hold_lock_then_wait(q, ready):
    """Take the channel mutex as C does (CAS 0 -> pid, here a plain store on an idle
    channel) and stay inside, until SIGKILLed."""
    fp = _core.fast()
    word = mutex_word(fp, q._channel._addr)
    assert word.value == 0
    word.value = os.getpid()
    ready.set()
    time.sleep(600)


def _hammer(q, ready):
    ready.set()
    while True:
        q.put(b'h' * 64)
        q.get()


def test_holder_sigkilled_inside(fp):
    q = mp.Queue()
    ready = mp.Event()
    p = mp.Process(target=_hold_lock_then_wait, args=(q, ready))
    p.start()
    assert ready.wait(30)
    word = mutex_word(fp, chan(q))
    assert word.value == p.pid
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    q.put('x')                       # C: CAS fails -> Go takes over the dead holder's lock
    assert q.get(timeout=10) == 'x'
    assert word.value == 0
    # Processes killed at random points of a C put/get loop (about a third of the
    # kills land inside the channel lock): the channel stays usable.
    held = 0
    for i in range(40):
        ready = mp.Event()
        p = mp.Process(target=_hammer, args=(q, ready))
        p.start()
        assert ready.wait(30)
        time.sleep(0.01 + 0.002 * i)
        os.kill(p.pid, signal.SIGKILL)
        p.join(10)
        held += word.value & 0x7fffffff == p.pid
        q.put(i)
        while q.get(timeout=10) != i:
            pass
        assert word.value == 0
        if held >= 2 and i >= 4:
            break
    assert held >= 1


# ---- the module-level send()/recv() (an address in, the channel found in a small cache)


def _send_each_its_index(chans, rounds, go):
    for r in range(rounds):
        go.get(timeout=60)
        for i, ch in enumerate(chans):
            ch.send(b'%d.%d' % (r, i))


def test_waits_on_many_channels_take_their_own_messages():
    # 256 threads, each waiting in slices on its own channel (its wait sleeps
    # in C without the GIL), 4 cache entries per bucket of the address cache:
    # the others' lookups replace the waiter's entry while it sleeps. A
    # message for every channel at once: each waiter must get its own, and
    # nothing may stay behind (a wait that used the replaced entry took the
    # other channel's message: ~1% of them went to the wrong waiter).
    from dragon_mp.queues import _Channel
    n, rounds = 256, 4
    chans = [_Channel(0) for _ in range(n)]
    go = mp.Queue()
    wrong, got = [], collections.Counter()
    stop = threading.Event()

    def wait(i):
        for r in range(rounds):
            while not stop.is_set():
                try:
                    m = chans[i].recv(timeout=0.02)
                except queue.Empty:
                    continue
                got[i] += 1
                if m != b'%d.%d' % (r, i):
                    wrong.append((i, m))
                break

    threads = [threading.Thread(target=wait, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    p = mp.Process(target=_send_each_its_index, args=(chans, rounds, go))
    p.start()
    try:
        for r in range(rounds):
            time.sleep(0.1)             # every waiter idle again, asleep in C
            go.put(r)
            deadline = time.monotonic() + 30
            while sum(got.values()) < n * (r + 1) and time.monotonic() < deadline and not wrong:
                time.sleep(0.01)
            assert not wrong, wrong[:5]
            assert sum(got.values()) == n * (r + 1), [i for i in range(n) if got[i] <= r][:10]
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        p.join(5 if wrong else 30)
        if p.is_alive():
            p.kill()            # a failed round: it waits for a go that will not come
            p.join(10)
    assert p.exitcode == 0
    assert [len(ch) for ch in chans] == [0] * n


class _LooksAround:
    """Pickling it receives (timeout 0) on every channel of `others`: every
    entry of the address cache is replaced while the send that pickles it
    is under way."""

    def __init__(self, others):
        self.others = others

    def __reduce__(self):
        for ch in self.others:
            try:
                ch.recv(timeout=0)
            except queue.Empty:
                pass
        return (str, ('mine',))


def test_send_of_an_object_whose_pickling_uses_other_channels():
    from dragon_mp.queues import _Channel
    others = [_Channel(0) for _ in range(256)]
    for k in range(8):
        r, w = mp.Pipe(duplex=False)
        w.send(_LooksAround(others))
        assert r.poll(10) and r.recv() == 'mine'
        assert [len(ch) for ch in others] == [0] * len(others)
        r.close()
        w.close()

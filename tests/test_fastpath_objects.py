"""dragon_mp._fastpath objects: pickling in C (put/get, Chan, the bytes shortcut),
fork, C and Go on one semaphore, RLock and Event (see test_fastpath.py)."""

import functools
import os
import pickle
import queue
import threading
import time

import pytest

import dragon_mp as mp
from dragon_mp import _core, _fast

from conftest import INLINE, chan, payload

TOOMANYRELEASES = -_core.TOOMANYRELEASES


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return type(other) is Point and (self.x, self.y) == (other.x, other.y)


# ---- put / get / Chan: pickling in C

@pytest.mark.parametrize('obj', [
    None, True, 7, 2**100, 1.5, 'text', b'bytes', bytearray(b'ba'), (1, 'a', (2.0, None)),
    [1, [2, [3]]], {'k': [1, 2], 3: b'v'}, {1, 2}, Point(1, 2), functools.partial(int, base=2),
    [Point(3, 4)] * 3, list(range(1000)), b'L' * (3 << 20),
])
def test_put_get_objects(fp, obj):
    q = mp.Queue()
    fp.put(chan(q), obj, 0)
    got = fp.get(chan(q), 0, INLINE)
    if isinstance(obj, functools.partial):
        assert got('101') == 5
    else:
        assert got == obj and type(got) is type(obj)
    q.put(obj)                                           # interoperates with the Queue's own put/get
    got = fp.get(chan(q), 0, INLINE)
    fp.put(chan(q), obj, 0)
    again = q.get(timeout=5)
    if not isinstance(obj, functools.partial):
        assert got == obj and again == obj


def test_put_get_errors(fp):
    q = mp.Queue(maxsize=1)
    with pytest.raises(queue.Empty):
        fp.get(chan(q), 0, INLINE)
    start = time.monotonic()
    with pytest.raises(queue.Empty):
        fp.get(chan(q), 150_000_000, INLINE)
    assert time.monotonic() - start >= 0.14
    fp.put(chan(q), 1, 0)
    with pytest.raises(queue.Full):
        fp.put(chan(q), 2, 0)
    with pytest.raises(queue.Full):
        fp.put(chan(q), 2, 150_000_000)
    with pytest.raises((AttributeError, pickle.PicklingError)):
        fp.put(chan(q), lambda: 0, 0)                    # unpicklable: raised by put itself
    assert fp.get(chan(q), 0, INLINE) == 1
    with pytest.raises(ValueError):
        fp.get(12345, 0, INLINE)


def test_chan_methods(fp):
    q = mp.Queue(maxsize=2)
    c = fp.Chan(chan(q), INLINE)
    assert c.addr == chan(q) and not c.closed
    c.put(1)
    c.put(2, True, 5)
    with pytest.raises(queue.Full):
        c.put(3, False)
    with pytest.raises(queue.Full):
        c.put(3, timeout=0.05)
    with pytest.raises(queue.Full):
        c.put_nowait(3)
    assert c.get() == 1
    assert c.get(block=True, timeout=1) == 2
    with pytest.raises(queue.Empty):
        c.get(False)
    with pytest.raises(queue.Empty):
        c.get(timeout=0.05)
    with pytest.raises(queue.Empty):
        c.get_nowait()
    with pytest.raises(TypeError):
        c.get(wait=True)
    with pytest.raises(TypeError):
        c.put()
    c.close()
    assert c.closed
    with pytest.raises(ValueError):
        c.put(1)
    with pytest.raises(ValueError):
        c.get()


def test_chan_threads(fp):
    q = mp.Queue()
    c = fp.Chan(chan(q), INLINE)
    n, results = 2000, []

    def produce(k):
        for i in range(n):
            c.put((k, i))

    def consume():
        for _ in range(n):
            results.append(c.get(timeout=30))

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(3)]
    threads += [threading.Thread(target=consume) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == [(k, i) for k in range(3) for i in range(n)]


# ---- fork

def test_forked_child_is_refused_not_hung(fp):
    lock = mp.Lock()
    a = lock._addr
    fp.sem_acquire(a, 0)
    fp.sem_release(a)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fp.sem_release(a)
        except RuntimeError as e:
            code = 0 if 'fork' in str(e) else 2
        except BaseException:
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert fp.ready()


# ---- the bytes shortcut: small bytes are pickled and unpickled in C

@pytest.fixture
def wide_channel(fp):
    """A channel whose inline size (64 KiB) holds every pickle these tests send."""
    from dragon_mp import _runtime
    _runtime.current()
    go = _core.gocore()
    addr = _core.call(go.ChannelCreate, 0, 65536)
    yield addr
    _core.call(go.ChannelRelease, addr)


@pytest.mark.parametrize('size', [0, 1, 255, 256, 2047, 2048, 2049, 60000])
@pytest.mark.parametrize('protocol', [3, 4, 5])
def test_bytes_pickles_from_any_sender(fp, wide_channel, size, protocol):
    data = payload(size)
    assert fp.send(wide_channel, pickle.dumps(data, protocol), 0) == 0
    assert fp.get(wide_channel, 0) == data
    fp.put(wide_channel, data, 0)
    raw = fp.recv(wide_channel, 0)
    assert pickle.loads(raw) == data
    fp.put(wide_channel, data, 0)
    assert fp.Chan(wide_channel).get() == data


@pytest.mark.parametrize('raw', [
    pickle.dumps((b'ab',)), pickle.dumps(bytearray(b'ab'), 5), pickle.dumps([b'x', b'x']),
    pickle.dumps(b'ab', 2), b'\x80\x05C\x02ab\x94\x94.', b'\x80\x05C\x02ab.junk',
])
def test_other_pickles_go_through_loads(fp, wide_channel, raw):
    fp.send(wide_channel, raw, 0)
    assert fp.get(wide_channel, 0) == pickle.loads(raw)


@pytest.mark.parametrize('raw', [b'\x80\x05C\x05abc.', b'\x80\x05C\x02ab', b'\x80\x05B\xff\xff\xff\xffab.', b''])
def test_malformed_pickles_raise_like_loads(fp, wide_channel, raw):
    with pytest.raises(Exception) as expected:
        pickle.loads(raw)
    fp.send(wide_channel, raw, 0)
    with pytest.raises(type(expected.value)):
        fp.get(wide_channel, 0)


def test_chan_put_keywords(fp):
    q = mp.Queue()
    c = fp.Chan(chan(q), INLINE)
    c.put(obj=1)
    c.put(2, block=False)
    c.put(obj=3, timeout=1)
    with pytest.raises(TypeError):
        c.put(1, obj=1)
    with pytest.raises(TypeError):
        c.put(1, True, 1, 2)
    assert [c.get(), c.get(), c.get()] == [1, 2, 3]


def test_owner_lives_as_long_as_bound_methods(fp):
    import gc
    import weakref

    class Owner:
        pass

    q = mp.Queue()
    owner = Owner()
    alive = weakref.ref(owner)
    put = fp.Chan(chan(q), INLINE, owner).put          # only the bound method is kept
    del owner
    gc.collect()
    assert alive() is not None
    put(1)
    del put
    gc.collect()
    assert alive() is None

    lock = mp.Lock()
    owner = Owner()
    alive = weakref.ref(owner)
    s = fp.Sem(lock._addr, _fast.sem_word(lock._addr), owner)
    owner.sem = s                                        # a cycle through the owner: collectable
    gone = weakref.ref(s)
    del owner, s
    gc.collect()
    assert alive() is None and gone() is None
    assert lock.acquire(False)
    lock.release()


# ---- C and Go on one semaphore: the atomic protocols must match (shmsync/semaphore.go)

def _go_sem_ops(fp, addr):
    """acquire(timeout_ns)/release through Go (dmp_sem_acquire/dmp_sem_release)."""
    def acquire(timeout_ns=-1):
        return fp.sem_acquire(addr, timeout_ns) == 1

    def release():
        assert fp.sem_release(addr) == 0
    return acquire, release


def mixed_sem_worker(lock, counter, sem, rounds, releases, q):
    """In a child: increments under `lock` and releases of `sem`, half through C, half through Go."""
    from dragon_mp import _core
    fp = _core.fast()
    go_acquire, go_release = _go_sem_ops(fp, lock._addr)
    for i in range(rounds):
        if i % 2:
            assert lock.acquire(timeout=60)             # C: _fastpath.Sem
            counter.value += 1
            lock.release()
        else:
            assert go_acquire()
            counter.value += 1
            go_release()
    for i in range(releases):
        if i % 2:
            sem.release()
        else:
            assert fp.sem_release(sem._addr) == 0
    q.put(('done', lock._sem is not None and lock._sem.direct))


def test_sem_c_and_go_mixed_exact_counts(fp):
    lock, sem = mp.Lock(), mp.Semaphore(0)
    counter = mp.RawValue('i', 0)               # incremented only under the lock, non-atomically
    assert lock._sem.direct and sem._sem.direct
    q = mp.Queue()
    nthreads, nprocs, rounds, releases = 4, 2, 3000, 2000
    procs = [mp.Process(target=mixed_sem_worker, args=(lock, counter, sem, rounds, releases, q))
             for _ in range(nprocs)]
    for p in procs:
        p.start()
    go_acquire, go_release = _go_sem_ops(fp, lock._addr)
    sem_go_acquire, _ = _go_sem_ops(fp, sem._addr)
    taken = [0] * nthreads

    def thread_work(k):
        for i in range(rounds):
            if (i + k) % 2:
                with lock:
                    counter.value += 1
            else:
                assert go_acquire()
                counter.value += 1
                go_release()
        # consume the children's releases: C and Go acquires on a counting semaphore
        for i in range(nprocs * releases // nthreads):
            ok = sem.acquire(timeout=60) if (i + k) % 2 else sem_go_acquire(60_000_000_000)
            assert ok
            taken[k] += 1

    threads = [threading.Thread(target=thread_work, args=(k,)) for k in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [q.get(timeout=60) for _ in procs] == [('done', True)] * nprocs
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert counter.value == (nthreads + nprocs) * rounds
    assert sum(taken) == nprocs * releases
    assert lock._get_value() == 1 and sem.get_value() == 0
    assert not sem.acquire(False) and fp.sem_acquire(sem._addr, 0) == 0


def test_bounded_sem_c_and_go_refuse_the_same_release(fp):
    b = mp.BoundedSemaphore(3)
    go_acquire, _ = _go_sem_ops(fp, b._addr)
    assert b.acquire() and go_acquire(0) and b.acquire()
    assert b.get_value() == 0
    b.release()
    assert fp.sem_release(b._addr) == 0
    b.release()
    assert b.get_value() == 3
    assert fp.sem_release(b._addr) == TOOMANYRELEASES
    with pytest.raises(ValueError):
        b.release()
    assert b.get_value() == 3


def test_sem_word_comes_from_go(fp):
    lock = mp.Lock()
    word = _fast.sem_word(lock._addr)
    assert word and word % 4 == 0
    assert fp.Sem(lock._addr, word + 64).direct is False  # a word Go does not confirm: not trusted
    assert fp.Sem(lock._addr, word).direct
    assert _fast.rlock_word(mp.RLock()._addr) and _fast.event_word(mp.Event()._addr)
    with pytest.raises(ValueError):
        _fast.rlock_word(lock._addr)                     # a semaphore is not an RLock
    with pytest.raises(ValueError):
        _fast.event_word(lock._addr)


# ---- RLock and Event: C methods (shmsync/rlock.go, shmsync/event.go)

@pytest.fixture(params=['direct', 'through-go'])
def direct(fp, request):
    return request.param == 'direct'


def test_rlock_c_methods(fp, direct):
    from dragon_mp import synchronize
    rl = mp.RLock()
    word = _fast.rlock_word(rl._addr) if direct else 0
    c = fp.RLock(rl._addr, word)
    assert c.direct == direct and c.addr == rl._addr
    assert fp.thread_owner() == synchronize._owner_id() == fp.thread_owner()
    assert c.acquire() and c.acquire(False) and c.acquire(True, 0.01)
    assert rl._count() == 3 and rl._is_owned()            # Go sees C's steps
    go_acquire = fp.bind('dmp_rlock_acquire', 'uut', 0)
    go_release = fp.bind('dmp_rlock_release', 'uu')
    assert go_acquire(rl._addr, fp.thread_owner(), 0) == 1   # and C sees Go's
    assert rl._count() == 4
    assert go_release(rl._addr, fp.thread_owner()) == 0
    for _ in range(3):
        c.release()
    assert rl._count() == 0 and repr(rl) == '<RLock(None, 0)>'
    with pytest.raises(AssertionError, match='not owned by thread'):
        c.release()
    with c:
        assert repr(rl) == '<RLock(MainProcess, 1)>'
    other = []

    def in_thread():
        other.append(fp.thread_owner())
        other.append(c.acquire(False))
        try:
            c.release()
        except AssertionError:
            other.append('refused')

    with c:
        t = threading.Thread(target=in_thread)
        t.start()
        t.join(10)
    assert other[0] not in (0, fp.thread_owner()) and other[1:] == [False, 'refused']
    assert c.acquire(timeout=5)
    got = []
    t = threading.Thread(target=lambda: got.append(c.acquire(timeout=10)))   # waits in Go
    t.start()
    time.sleep(0.3)
    assert t.is_alive()
    c.release()                                           # must wake it
    t.join(10)
    assert got == [True] and rl._count() == 1


def test_rlock_c_mutual_exclusion(fp):
    rl = mp.RLock()
    counter = [0]

    def work():
        lk = rl.acquire, rl.release
        for _ in range(3000):
            lk[0]()
            lk[0]()
            counter[0] += 1
            lk[1]()
            lk[1]()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert counter[0] == 12000 and rl._count() == 0


def test_event_c_methods(fp, direct):
    ev = mp.Event()
    word = _fast.event_word(ev._addr) if direct else 0
    e = fp.Event(ev._addr, word)
    assert e.direct == direct
    go = _core.gocore()
    assert e.is_set() is False and e.wait(0) is False and e.wait(timeout=-1) is False
    start = time.monotonic()
    assert e.wait(0.1) is False and time.monotonic() - start >= 0.09
    e.set()
    assert _core.call(go.EventIsSet, ev._addr) == 1 and e.is_set() is True
    assert e.wait() is True and e.wait(timeout=None) is True
    e.set()
    e.clear()
    assert _core.call(go.EventIsSet, ev._addr) == 0 and e.is_set() is False
    _core.call(go.EventSet, ev._addr)
    assert e.is_set() is True
    _core.call(go.EventClear, ev._addr)
    assert e.is_set() is False
    with pytest.raises(TypeError):
        e.wait(1, 2)
    with pytest.raises(TypeError):
        e.wait(wait=1)
    got = []
    t = threading.Thread(target=lambda: got.append(e.wait(10)))                  # waits in Go
    t.start()
    time.sleep(0.3)
    assert t.is_alive()
    e.set()                                               # must wake it
    t.join(10)
    assert got == [True]


def set_event_later(event, delay):
    time.sleep(delay)
    event.set()


def test_event_c_set_wakes_another_process(fp):
    e = mp.Event()
    assert e._fast.direct
    p = mp.Process(target=set_event_later, args=(e, 0.3))
    p.start()
    assert e.wait(30) is True
    p.join(30)
    assert p.exitcode == 0


def test_invalidate_stops_direct_access(fp):
    rl, ev = mp.RLock(), mp.Event()
    c = fp.RLock(rl._addr, _fast.rlock_word(rl._addr))
    e = fp.Event(ev._addr, _fast.event_word(ev._addr))
    assert c.direct and e.direct
    assert c.acquire()
    fp.invalidate()
    assert not c.direct and not e.direct
    c.release()                                            # through Go from now on
    assert rl._count() == 0
    e.set()
    assert ev.is_set()

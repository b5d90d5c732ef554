"""dragon_mp._fastpath (pyext/fastpath.c): direct C calls into the Go core's //export functions."""

import functools
import hashlib
import os
import pickle
import queue
import signal
import sys
import threading
import time

import pytest

import dragon_mp as mp
from dragon_mp import _core, _fast

TIMEOUT, FULL, TOOMANYRELEASES = -_core.TIMEOUT, -_core.FULL, -_core.TOOMANYRELEASES
INLINE = 256                    # gocore/channel DefaultInline: a Queue's inline payload size


def so_path():
    _core.gocore()
    import dragon_mp._gobind as g
    return sys.modules[g.EXTENSION].__file__


@pytest.fixture
def fp():
    if os.environ.get('DRAGON_MP_FASTPATH') == '0':
        pytest.skip('fast path disabled (DRAGON_MP_FASTPATH=0)')
    module = _fast.load(so_path())
    assert module is not None, 'dragon_mp._fastpath is not built'
    yield module
    # conftest shuts the run down after each test: no Sem may touch its pool after that.
    module.invalidate()


def chan(q):
    return q._channel._addr


def payload(size):
    return bytes(range(256)) * (size // 256) + b'x' * (size % 256)


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return type(other) is Point and (self.x, self.y) == (other.x, other.y)


# ---- module setup

def test_init_is_idempotent_and_refuses_an_unloaded_library(fp, tmp_path):
    assert fp.ready()
    fp.init(so_path())
    assert fp.ready()
    other = tmp_path / 'not_loaded.so'
    other.write_bytes(b'')
    with pytest.raises(OSError):
        fp.init(str(other))
    assert fp.ready()


def test_bind(fp):
    acquire = fp.bind('dmp_sem_acquire', 'ut', 0)
    release = fp.bind('dmp_sem_release', 'u')
    lock = mp.Lock()                                     # keep it: the last reference frees it
    a = lock._addr
    assert acquire(a, 0) == 1
    assert acquire(a, 0) == 0
    start = time.monotonic()
    assert acquire(a, 50_000_000) == 0
    assert time.monotonic() - start >= 0.045
    assert release(a) == 0
    assert release(a) == TOOMANYRELEASES
    assert 'dmp_sem_acquire' in repr(acquire)
    with pytest.raises(TypeError):
        acquire(a)
    with pytest.raises(AttributeError):
        fp.bind('dmp_no_such_function', 'u')
    with pytest.raises(ValueError):
        fp.bind('dmp_sem_acquire', 'ux')
    with pytest.raises(ValueError):
        fp.bind('dmp_sem_acquire', 'tt')


# ---- send / recv

@pytest.mark.parametrize('size', [0, 1, INLINE - 1, INLINE, INLINE + 1, 64 << 10, 8 << 20])
def test_send_recv_sizes(fp, size):
    q = mp.Queue()
    data = payload(size)
    assert fp.send(chan(q), data, 0) == 0
    got = fp.recv(chan(q), 0, INLINE)
    assert type(got) is bytes and len(got) == size
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert fp.recv(chan(q), 0, INLINE) == TIMEOUT


@pytest.mark.parametrize('kind', [bytearray, memoryview, lambda b: memoryview(bytearray(b))[::1]])
def test_send_takes_any_buffer(fp, kind):
    q = mp.Queue()
    for size in (0, 100, 1 << 20):
        data = payload(size)
        assert fp.send(chan(q), kind(data), -1) == 0
        assert fp.recv(chan(q), -1, INLINE) == data
    with pytest.raises(TypeError):
        fp.send(chan(q), 'not bytes', 0)


def test_recv_default_capacity_and_short_buffer(fp):
    q = mp.Queue()
    fp.send(chan(q), b'y' * INLINE, 0)
    assert fp.recv(chan(q), 0) == b'y' * INLINE          # default capacity: 64 KiB
    fp.send(chan(q), b'z' * 100, 0)
    assert fp.recv(chan(q), 0, 10) < 0                   # does not fit: stays queued
    assert fp.recv(chan(q), 0, INLINE) == b'z' * 100


def test_wire_format_matches_the_ctypes_path(fp):
    q = mp.Queue()
    for size in (10, 1 << 20):
        fp.send(chan(q), pickle.dumps(payload(size)), 0)
        assert q.get(timeout=5) == payload(size)
        q.put(payload(size))
        assert pickle.loads(fp.recv(chan(q), 5_000_000_000, INLINE)) == payload(size)


def test_timeouts(fp):
    q = mp.Queue(maxsize=1)
    start = time.monotonic()
    assert fp.recv(chan(q), 50_000_000, INLINE) == TIMEOUT
    assert time.monotonic() - start >= 0.045
    assert fp.send(chan(q), b'a', 0) == 0
    assert fp.send(chan(q), b'b', 0) == FULL              # dmp_send reports a timeout as FULL
    start = time.monotonic()
    assert fp.send(chan(q), b'b', 250_000_000) == FULL     # several 100 ms slices
    assert time.monotonic() - start >= 0.24
    assert fp.send(chan(q), b'x' * (1 << 20), 0) == FULL   # large: refused before the copy
    assert fp.recv(chan(q), 0, INLINE) == b'a'


def test_blocked_recv_releases_the_gil_and_wakes(fp):
    q = mp.Queue()
    out = []
    t = threading.Thread(target=lambda: out.append(fp.recv(chan(q), -1, INLINE)))
    t.start()
    spins = 0
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:      # this thread keeps running Python meanwhile
        spins += 1
    assert spins > 10_000 and t.is_alive()
    fp.send(chan(q), b'wake', 0)
    t.join(5)
    assert out == [b'wake']


def test_bad_addresses_give_negative_codes(fp):
    for addr in (0, 8, 64, 12345, (1 << 48) - 64, 1 << 48, 2**64 - 1):
        assert fp.send(addr, b'x', 0) < 0
        assert fp.send(addr, b'x' * (1 << 20), 0) < 0
        assert fp.recv(addr, 0) < 0
        assert fp.sem_acquire(addr, 0) < 0
        assert fp.sem_release(addr) < 0
        assert fp.last_error()
    lock = mp.Lock()
    assert fp.recv(lock._addr, 0) < 0                     # a semaphore is not a channel
    with pytest.raises(OverflowError):
        fp.send(-1, b'x', 0)
    with pytest.raises(TypeError):
        fp.recv(chan(mp.Queue()))


def test_many_threads(fp):
    q = mp.Queue(maxsize=8)
    addr = chan(q)
    producers, per, consumers = 4, 500, 3
    got = []
    lock = threading.Lock()

    def produce(k):
        for i in range(per):
            data = pickle.dumps((k, i, b'p' * (i % 400)))
            assert fp.send(addr, data, -1) == 0

    def consume():
        while True:
            r = fp.recv(addr, 5_000_000_000, INLINE)
            assert type(r) is bytes
            item = pickle.loads(r)
            if item is None:
                return
            with lock:
                got.append(item[:2])

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(producers)]
    threads += [threading.Thread(target=consume) for _ in range(consumers)]
    for t in threads:
        t.start()
    for t in threads[:producers]:
        t.join(60)
    for _ in range(consumers):
        fp.send(addr, pickle.dumps(None), -1)
    for t in threads[producers:]:
        t.join(60)
    assert sorted(got) == [(k, i) for k in range(producers) for i in range(per)]


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason='signals')
def test_signal_interrupts_a_blocked_call(fp):
    q = mp.Queue()

    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.15)
        start = time.monotonic()
        with pytest.raises(Interrupted):
            fp.recv(chan(q), -1, INLINE)
        assert time.monotonic() - start < 1.0
        signal.setitimer(signal.ITIMER_REAL, 0.15)
        with pytest.raises(Interrupted):
            fp.Chan(chan(q), INLINE).get()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    q.put('after')                                       # the channel is intact
    assert pickle.loads(fp.recv(chan(q), 0, INLINE)) == 'after'


# ---- sem_acquire / sem_release

def test_sem_functions(fp):
    lock = mp.Lock()
    a = lock._addr
    assert fp.sem_acquire(a, 0) == 1
    assert fp.sem_acquire(a, 0) == 0
    start = time.monotonic()
    assert fp.sem_acquire(a, 120_000_000) == 0
    assert time.monotonic() - start >= 0.115
    assert not lock.acquire(block=False)                 # the same semaphore
    assert fp.sem_release(a) == 0
    assert fp.sem_release(a) == TOOMANYRELEASES
    assert lock.acquire(block=False)
    lock.release()

    sem = mp.Semaphore(2)
    assert [fp.sem_acquire(sem._addr, 0) for _ in range(3)] == [1, 1, 0]
    assert fp.sem_release(sem._addr) == 0
    assert sem.get_value() == 1


def test_sem_threads(fp):
    lock = mp.Lock()
    a = lock._addr
    counter = [0]

    def work():
        for _ in range(2000):
            assert fp.sem_acquire(a, -1) == 1
            counter[0] += 1
            assert fp.sem_release(a) == 0

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert counter[0] == 8000


# ---- Sem: C acquire/release, direct atomics on the shared word

@pytest.fixture(params=['direct', 'through-go'])
def make_sem(fp, request):
    def make(obj):
        word = _fast.sem_word(obj._addr) if request.param == 'direct' else 0
        s = fp.Sem(obj._addr, word)
        assert s.direct == (request.param == 'direct')
        return s
    return make


def test_sem_lock_semantics(fp, make_sem):
    lock = mp.Lock()
    s = make_sem(lock)
    assert s.acquire() is True
    assert s._is_mine() and s._count() == 1
    assert s.acquire(False) is False
    assert s.acquire(block=False) is False
    assert s.acquire(True, 0.05) is False
    assert s.acquire(timeout=0) is False
    assert not lock.acquire(block=False)                 # visible to the ctypes path
    s.release()
    assert not s._is_mine() and s._count() == 0
    with pytest.raises(ValueError):
        s.release()
    with s:
        assert lock._get_value() == 0
    assert lock._get_value() == 1
    assert lock.acquire(block=False)                     # and the ctypes path's changes to it
    assert s.acquire(False) is False
    lock.release()
    with pytest.raises(TypeError):
        s.acquire(True, None, 3)
    with pytest.raises(TypeError):
        s.acquire(blocking=True)


def test_sem_semaphore_values(fp, make_sem):
    sem = mp.Semaphore(3)
    s = make_sem(sem)
    assert [s.acquire(False) for _ in range(4)] == [True, True, True, False]
    for _ in range(5):
        s.release()                                      # unbounded
    assert sem.get_value() == 5
    bounded = mp.BoundedSemaphore(2)
    b = make_sem(bounded)
    assert b.acquire() and b.acquire() and not b.acquire(False)
    b.release()
    b.release()
    with pytest.raises(ValueError):
        b.release()
    assert bounded.get_value() == 2


def test_sem_wakes_a_waiting_thread(fp, make_sem):
    lock = mp.Lock()
    s = make_sem(lock)
    assert s.acquire()
    got = []
    t = threading.Thread(target=lambda: got.append(lock.acquire(timeout=10)))   # waits in Go
    t.start()
    time.sleep(0.3)
    assert t.is_alive()
    s.release()                                          # C release must wake Go's futex waiter
    t.join(5)
    assert got == [True]
    t = threading.Thread(target=lambda: got.append(s.acquire(timeout=10)))      # waits via C
    t.start()
    time.sleep(0.3)
    assert t.is_alive()
    lock.release()
    t.join(5)
    assert got == [True, True]
    s.release()


def test_sem_mutual_exclusion_in_threads(fp, make_sem):
    lock = mp.Lock()
    sems = [make_sem(lock) for _ in range(4)]
    counter = [0]

    def work(s):
        for _ in range(3000):
            with s:
                v = counter[0]
                counter[0] = v + 1

    threads = [threading.Thread(target=work, args=(s,)) for s in sems]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert counter[0] == 12000
    assert lock._get_value() == 1


def hold_then_signal(lock, q, seconds):
    lock.acquire()
    q.put('held')
    time.sleep(seconds)
    lock.release()


def wait_for_lock(lock, q):
    q.put('waiting')
    q.put(lock.acquire(timeout=30))
    lock.release()


def test_sem_across_processes(fp, make_sem):
    lock, q = mp.Lock(), mp.Queue()
    s = make_sem(lock)
    p = mp.Process(target=hold_then_signal, args=(lock, q, 0.5))
    p.start()
    assert q.get(timeout=30) == 'held'
    assert s.acquire(False) is False
    assert s.acquire(timeout=30) is True                 # released by the child
    p.join(30)
    p = mp.Process(target=wait_for_lock, args=(lock, q))
    p.start()
    assert q.get(timeout=30) == 'waiting'
    time.sleep(0.3)
    s.release()                                          # wakes the child's futex wait
    assert q.get(timeout=30) is True
    p.join(30)
    assert p.exitcode == 0


def test_sem_subclass_and_invalidate(fp):
    class MyLock(fp.Sem):
        pass

    lock = mp.Lock()
    s = MyLock(lock._addr, _fast.sem_word(lock._addr))
    s.extra = 1                                          # a Python subclass has a __dict__
    import weakref
    assert weakref.ref(s)() is s
    assert s.direct and s.acquire()
    fp.invalidate()
    assert not s.direct                                  # goes through Go from now on
    s.release()
    assert s.acquire(False) and not s.acquire(False)
    s.release()
    assert fp.Sem(lock._addr, 0).direct is False
    assert fp.Sem(lock._addr, _fast.sem_word(lock._addr)).direct
    with pytest.raises(ValueError):
        _fast.sem_word(mp.Queue()._channel._addr)        # not a semaphore: Go refuses


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
    q.put(obj)                                           # interoperates with the ctypes path
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

"""dragon_mp._fastpath (pyext/fastpath.c): direct C calls into the Go core's //export functions."""

import functools
import hashlib
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

import dragon_mp as mp
from dragon_mp import _core, _fast

from conftest import clean_env

TIMEOUT, FULL, TOOMANYRELEASES = -_core.TIMEOUT, -_core.FULL, -_core.TOOMANYRELEASES
INLINE = 256                    # gocore/channel DefaultInline: a Queue's inline payload size


def so_path():
    _core.gocore()
    import dragon_mp._gobind as g
    return sys.modules[g.EXTENSION].__file__


@pytest.fixture
def fp():
    module = _fast.load(so_path())
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


def test_wire_format_matches_queue_put_get(fp):
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
    assert not lock.acquire(block=False)                 # visible to the Lock's own methods
    s.release()
    assert not s._is_mine() and s._count() == 0
    with pytest.raises(ValueError):
        s.release()
    with s:
        assert lock._get_value() == 0
    assert lock._get_value() == 1
    assert lock.acquire(block=False)                     # and their changes to it
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


# ---- large messages: a pool block filled by C (dmp_msg_alloc/dmp_send_block)

BLOCK = 64 << 10        # fastpath.c BLOCK_COPY: from this size C copies into the block


@pytest.mark.parametrize('size', [BLOCK - 1, BLOCK, BLOCK + 1, (1 << 20) - 11, 1 << 20, 3 << 20])
def test_block_path_sizes_and_boundaries(fp, size):
    q = mp.Queue()
    data = payload(size)
    c = fp.Chan(chan(q), INLINE)
    assert fp.send(chan(q), data, 0) == 0                # raw bytes
    assert fp.send(chan(q), bytearray(data), 0) == 0     # any buffer
    c.put(data)                                          # a pickled bytes object (3 parts)
    c.put([data[:10], data])                             # a large pickle from the pickler
    assert fp.recv(chan(q), 0, INLINE) == data
    assert fp.recv(chan(q), 0, INLINE) == data
    assert c.get(False) == data
    assert c.get(False) == [data[:10], data]
    assert fp.recv(chan(q), 0, INLINE) == TIMEOUT


def test_block_path_full_bounded_queue(fp):
    q = mp.Queue(maxsize=1)
    c = fp.Chan(chan(q), INLINE)
    big = payload(2 << 20)
    c.put(b'first')
    with pytest.raises(queue.Full):
        c.put(big, False)                                # refused before any copy
    start = time.monotonic()
    with pytest.raises(queue.Full):
        c.put(big, timeout=0.25)                         # the block is sent again each slice
    assert time.monotonic() - start >= 0.24
    assert fp.send(chan(q), big, 120_000_000) == FULL
    # a put that waits goes through once a get makes room, with its block intact
    t = threading.Timer(0.3, lambda: out.append(c.get()))
    out = []
    t.start()
    c.put(big, timeout=10)
    t.join()
    assert out == [b'first']
    assert c.get(timeout=5) == big
    for _ in range(20):                 # sends that time out give their blocks back
        c.put(b'fill')
        with pytest.raises(queue.Full):
            c.put(big, timeout=0.01)
        assert c.get(False) == b'fill'


def test_block_path_closed_connection_end(fp):
    a, b = mp.Pipe()
    b.close()
    with pytest.raises((BrokenPipeError, EOFError, OSError)):
        a.send_bytes(payload(1 << 20))
    a.close()


LARGE_HEAD = 64         # fastpath.c: a large bytes object's payload starts at this byte


@pytest.mark.parametrize('size', [BLOCK, BLOCK + 1, (1 << 20) - 1, 1 << 20])
def test_large_bytes_message_is_a_plain_pickle_with_an_aligned_payload(fp, size):
    q = mp.Queue()
    data = payload(size)
    c = fp.Chan(chan(q), INLINE)
    c.put(data)
    raw = fp.recv(chan(q), 0, INLINE)                    # the message as it sits in the pool
    assert len(raw) == LARGE_HEAD + size + 1
    assert raw[LARGE_HEAD:-1] == data and raw[-1:] == b'.'
    assert pickle.loads(raw) == data                     # any unpickler (other paths, nodes) reads it


@pytest.mark.parametrize('raw', [
    pickle.dumps(payload(BLOCK), 5),                     # stdlib's own pickle of large bytes
    pickle.dumps(payload(BLOCK), 4),
    pickle.dumps((payload(BLOCK),), 5),
    pickle.dumps(bytearray(payload(BLOCK)), 5),
])
def test_large_messages_of_other_shapes_are_unpickled(fp, raw):
    q = mp.Queue()
    c = fp.Chan(chan(q), INLINE)
    assert fp.send(chan(q), raw, 0) == 0
    got = c.get(False)
    assert got == pickle.loads(raw) and type(got) is type(pickle.loads(raw))


def test_large_bytes_header_with_a_wrong_length_is_not_trusted(fp):
    """A message of the large-bytes shape whose length disagrees with its
    header gets exactly what pickle.loads makes of it."""
    q = mp.Queue()
    c = fp.Chan(chan(q), INLINE)
    c.put(payload(BLOCK))
    good = fp.recv(chan(q), 0, INLINE)
    short = good[:-2] + b'.'                            # one payload byte fewer than the header says
    fp.send(chan(q), short, 0)
    with pytest.raises(EOFError):
        pickle.loads(short)
    with pytest.raises(EOFError):
        c.get(False)
    longer = good + b'x'                                # loads stops at STOP: trailing bytes ignored
    fp.send(chan(q), longer, 0)
    assert c.get(False) == pickle.loads(longer) == payload(BLOCK)
    fp.send(chan(q), good, 0)
    assert c.get(False) == payload(BLOCK)               # the queue is still usable


def _put_large(q, sizes):
    for size in sizes:
        q.put(payload(size))
    q.put(None)


def test_block_path_across_processes(fp):
    q = mp.Queue(maxsize=2)
    sizes = [BLOCK, 1 << 20, (1 << 20) + 3, 5 << 20] * 3
    p = mp.Process(target=_put_large, args=(q, sizes))
    p.start()
    got = []
    while True:
        m = q.get(timeout=30)
        if m is None:
            break
        got.append(hashlib.sha256(m).digest())
    p.join(30)
    assert p.exitcode == 0
    assert got == [hashlib.sha256(payload(s)).digest() for s in sizes]


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


# ---- channels in C (chan_try_send/chan_try_recv): inline messages without calling Go

import collections
import ctypes
import random


needs_direct = pytest.mark.skipif(os.environ.get('DRAGON_MP_FASTCHAN') == '0',
                                  reason='channels in C disabled (DRAGON_MP_FASTCHAN=0)')


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


@needs_direct
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


@needs_direct
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


@needs_direct
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


@needs_direct
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


@needs_direct
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


@needs_direct
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


@needs_direct
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


@needs_direct
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


@needs_direct
@pytest.mark.parametrize('producer,consumer', [(True, False), (False, True), (True, None), (None, True)])
def test_c_and_go_in_separate_processes(fp, producer, consumer):
    _run_mix(fp, mp.Queue(), [producer], [consumer], 4000)


@needs_direct
@pytest.mark.parametrize('maxsize', [0, 7])
def test_many_producers_and_consumers_c_and_go(fp, maxsize):
    _run_mix(fp, mp.Queue(maxsize), [True, False, True], [True, False], 3000)


@needs_direct
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


@needs_direct
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


GLIBC = os.confstr('CS_GNU_LIBC_VERSION') if hasattr(os, 'confstr') else None

PRIMED_RECEIVER = '''
import os, resource
import dragon_mp as mp
q = mp.Queue()
b = os.urandom(16 << 20)
def batch():                   # three results, dropped when the batch ends
    for _ in range(3):
        q.put(b)
    for _ in range(3):
        x = q.get()
        assert x == b
batch(); batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
batch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
'''


@pytest.mark.skipif(not (GLIBC or '').startswith('glibc'), reason='glibc malloc behaviour')
def test_large_results_do_not_refault_their_memory_every_batch():
    """A receiver of 16 MiB messages that drops its results between batches
    reuses their memory (fastpath.c prime_malloc): without it, glibc gives
    the two freed results back to the kernel and every batch faults 32 MiB
    (8192 pages) in again."""
    out = subprocess.run([sys.executable, '-c', PRIMED_RECEIVER], env=clean_env(),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) < 1000, out.stdout

"""dragon_mp._fastpath (pyext/fastpath.c): direct C calls into the Go core's //export functions.

This file: init and bind, send/recv, sem_acquire/sem_release, Sem objects, and
large messages (pool blocks filled by C, the huge-page allocations of large
results). test_fastpath_objects.py: pickling in C (put/get, Chan, the bytes
shortcut), fork, RLock and Event objects, C and Go on one semaphore.
test_fastpath_channels.py: channels in C. The fp fixture and small helpers
are in conftest.py.
"""

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

from conftest import INLINE, chan, clean_env, payload, so_path

TIMEOUT, FULL, TOOMANYRELEASES = -_core.TIMEOUT, -_core.FULL, -_core.TOOMANYRELEASES


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


def test_missing_extension_is_an_import_error_naming_it():
    """The extension is the only data plane: without it, the first use fails
    with an ImportError that names it and says what building it needs."""
    code = ('import sys; sys.modules["dragon_mp._fastpath"] = None\n'
            'import dragon_mp\n'
            'try:\n'
            '    dragon_mp.Queue()\n'
            'except ImportError as e:\n'
            '    print(e.name); print(e)\n')
    out = subprocess.run([sys.executable, '-c', code], env=clean_env(), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    name, message = out.stdout.split('\n', 1)
    assert name == 'dragon_mp._fastpath'
    assert 'dragon_mp._fastpath' in message and 'C compiler' in message


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

BLOCK = 64 << 10        # fastpath_chan.c BLOCK_COPY: from this size C copies into the block


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


LARGE_HEAD = 64         # fastpath_pickle.c: a large bytes object's payload starts at this byte


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
    reuses their memory (fastpath_chan.c prime_malloc): without it, glibc gives
    the two freed results back to the kernel and every batch faults 32 MiB
    (8192 pages) in again."""
    out = subprocess.run([sys.executable, '-c', PRIMED_RECEIVER], env=clean_env(),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) < 1000, out.stdout

"""Lock and semaphores, in one process and across processes.

Every test runs twice through the shared `mp` fixture (conftest.py): against
stdlib multiprocessing's 'spawn' context, the reference, and against
dragon_mp. Targets of children are module level (spawned children import this
module by name).
"""

import os
import time

import pytest

JOIN = 30


def critical(lock, q, rounds):
    for _ in range(rounds):
        with lock:
            q.put(('in', os.getpid()))
            time.sleep(0.001)
            q.put(('out', os.getpid()))


def critical_logged(lock, path, rounds):
    """Log entering and leaving with O_APPEND writes: complete when they return."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        for _ in range(rounds):
            with lock:
                os.write(fd, f'in {os.getpid()}\n'.encode())
                time.sleep(0.001)
                os.write(fd, f'out {os.getpid()}\n'.encode())
    finally:
        os.close(fd)


def hold(lock, q, seconds):
    with lock:
        q.put('held')
        time.sleep(seconds)


def test_lock_basics(mp):
    lock = mp.Lock()
    assert lock.acquire()
    assert not lock.acquire(block=False)
    assert not lock.acquire(timeout=0.05)
    lock.release()
    with pytest.raises(ValueError):
        lock.release()
    with lock:
        assert 'owner=MainProcess' in repr(lock)
    assert 'owner=None' in repr(lock)


def test_lock_excludes_across_processes(mp, tmp_path):
    log = tmp_path / 'log'
    log.write_text('')
    lock = mp.Lock()
    rounds, workers = 20, 3
    ps = [mp.Process(target=critical_logged, args=(lock, str(log), rounds)) for _ in range(workers)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(60)
        assert p.exitcode == 0
    events = [line.split() for line in log.read_text().splitlines()]
    assert len(events) == 2 * rounds * workers
    for enter, leave in zip(events[::2], events[1::2]):
        assert enter[0] == 'in' and leave == ['out', enter[1]]


# deliberate difference: no feeder thread, a put is complete when it returns, so the queue's order
# is the order of the puts across processes (stdlib's feeder threads may reorder them).
def test_lock_excludes_across_processes_queue_order():
    import dragon_mp
    lock, q = dragon_mp.Lock(), dragon_mp.Queue()
    rounds, workers = 20, 3
    ps = [dragon_mp.Process(target=critical, args=(lock, q, rounds)) for _ in range(workers)]
    for p in ps:
        p.start()
    events = [q.get(timeout=60) for _ in range(2 * rounds * workers)]
    for p in ps:
        p.join(JOIN)
        assert p.exitcode == 0
    for enter, leave in zip(events[::2], events[1::2]):
        assert enter[0] == 'in' and leave == ('out', enter[1])


def test_lock_held_by_child_times_out_in_parent(mp):
    lock, q = mp.Lock(), mp.Queue()
    p = mp.Process(target=hold, args=(lock, q, 1.0))
    p.start()
    assert q.get(timeout=JOIN) == 'held'
    assert not lock.acquire(timeout=0.1)
    assert lock.acquire(timeout=JOIN)
    lock.release()
    p.join(JOIN)
    assert p.exitcode == 0


def test_semaphores(mp):
    s = mp.Semaphore(2)
    assert s.acquire() and s.acquire()
    assert not s.acquire(timeout=0.05)
    s.release(); s.release(); s.release()
    assert s.get_value() == 3
    assert 'value=3' in repr(s)
    b = mp.BoundedSemaphore(1)
    assert b.acquire()
    b.release()
    with pytest.raises(ValueError):
        b.release()
    assert b.get_value() == 1


def test_default_semaphore_is_one(mp):
    s = mp.Semaphore()
    assert s.get_value() == 1
    assert s.acquire(block=False) and not s.acquire(block=False)
    s.release()


def test_negative_semaphore_value_is_refused(mp):
    # stdlib: sem_open() refuses the value with EINVAL, i.e. OSError (not ValueError).
    with pytest.raises(OSError):
        mp.Semaphore(-1)

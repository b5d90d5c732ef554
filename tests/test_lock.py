"""Lock and semaphores, in one process and across processes."""

import time

import pytest

import dragon_mp as mp


def critical(lock, q, rounds):
    import os
    for _ in range(rounds):
        with lock:
            q.put(('in', os.getpid()))
            time.sleep(0.001)
            q.put(('out', os.getpid()))


def hold(lock, q, seconds):
    with lock:
        q.put('held')
        time.sleep(seconds)


def test_lock_basics():
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


def test_lock_excludes_across_processes():
    lock, q = mp.Lock(), mp.Queue()
    rounds, workers = 20, 3
    ps = [mp.Process(target=critical, args=(lock, q, rounds)) for _ in range(workers)]
    for p in ps:
        p.start()
    events = [q.get(timeout=60) for _ in range(2 * rounds * workers)]
    for p in ps:
        p.join(30)
        assert p.exitcode == 0
    for enter, leave in zip(events[::2], events[1::2]):
        assert enter[0] == 'in' and leave == ('out', enter[1])


def test_lock_held_by_child_times_out_in_parent():
    lock, q = mp.Lock(), mp.Queue()
    p = mp.Process(target=hold, args=(lock, q, 1.0))
    p.start()
    assert q.get(timeout=30) == 'held'
    assert not lock.acquire(timeout=0.1)
    assert lock.acquire(timeout=30)
    lock.release()
    p.join(30)


def test_semaphores():
    s = mp.Semaphore(2)
    assert s.acquire() and s.acquire()
    assert not s.acquire(timeout=0.05)
    s.release(); s.release(); s.release()
    assert s.get_value() == 3
    b = mp.BoundedSemaphore(1)
    assert b.acquire()
    b.release()
    with pytest.raises(ValueError):
        b.release()
    with pytest.raises(ValueError):
        mp.Semaphore(-1)

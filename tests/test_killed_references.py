"""A process killed while it holds handles does not keep their objects alive.

Every handle (Queue, Lock, Event...) holds a counted reference to its object
in the run's pool; a process drops its references as its handles are
collected, which a killed process never does. Each process records the
references it holds in its ledger (gocore/ledger), and the run's head drops
those of a process that died (pyext/refs.go). Before that record, every
killed holder of a Queue kept ~66 KB of pool until the run ended.
"""

import gc
import os
import json
import signal
import time

import pytest

import dragon_mp
from dragon_mp import _core


def stats():
    return json.loads(_core.gocore().RuntimeStats())


def in_use():
    return stats()['in_use']


def _wait_until(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.02)
    return cond()


def _hold(ready, *objs):
    ready.set()                     # this process now holds a reference to each of objs
    time.sleep(3600)


def _start_holder(ready):
    """A child holding the only references to a Queue (with a message in
    it), a Lock, a Semaphore, a Pipe and a Value; returns it and the pool
    bytes those objects take."""
    base = in_use()
    q = dragon_mp.Queue()
    q.put(b'in the queue when its last holder dies')
    objs = (q, dragon_mp.Lock(), dragon_mp.Semaphore(3), *dragon_mp.Pipe(), dragon_mp.Value('i', 7))
    made = in_use() - base
    p = dragon_mp.Process(target=_hold, args=(ready, *objs))
    p.start()
    return p, made


@pytest.mark.parametrize('how', [signal.SIGKILL, signal.SIGTERM])
def test_objects_held_only_by_a_killed_process_are_freed(how):
    ready = dragon_mp.Event()
    base = in_use()
    refs_before = stats()['held_refs']
    p, made = _start_holder(ready)
    try:
        assert ready.wait(60), "the child never started"
        gc.collect()
        # The child's references keep every object alive, and its ledger records them.
        assert in_use() - base >= made, (in_use() - base, made)
        assert stats()['held_refs'] >= refs_before + 7
        os.kill(p.pid, how)
        p.join(30)
        assert p.exitcode == -how
        assert _wait_until(lambda: in_use() <= base), \
            "objects held only by a killed process were not freed (%d > %d): %s" % (
                in_use(), base, stats())
        assert _wait_until(lambda: stats()['held_refs'] <= refs_before), stats()
    finally:
        p.kill()
        p.join(30)


def _hold_and_exit(carrier, done):
    objs = carrier.get()
    done.set()
    return objs


def test_a_process_that_ends_normally_leaves_no_record():
    carrier, done = dragon_mp.Queue(), dragon_mp.Event()
    base = in_use()
    refs_before = stats()['held_refs']
    carrier.put((dragon_mp.Queue(), dragon_mp.Lock()))
    p = dragon_mp.Process(target=_hold_and_exit, args=(carrier, done))
    p.start()
    p.join(60)
    assert p.exitcode == 0 and done.is_set()
    assert _wait_until(lambda: in_use() <= base and stats()['held_refs'] <= refs_before), stats()


def _started(ready):
    ready.put(os.getpid())


def _square(x):
    return x * x


def test_a_terminated_pool_gives_its_memory_back():
    """Pool.__exit__ terminates its workers (SIGTERM): their handles of the
    pool's queues go with them. (Each worker has taken its arguments before
    the pool ends: a worker killed before it loaded them cannot have
    recorded their references, see docs/design.md.)"""
    ready = dragon_mp.SimpleQueue()
    base = in_use()
    for _ in range(3):
        with dragon_mp.Pool(2, initializer=_started, initargs=(ready,)) as pool:
            assert pool.map(_square, range(20)) == [x * x for x in range(20)]
            assert ready.get() != ready.get()       # both workers hold their handles
        pool.join()
        del pool
        gc.collect()
    assert _wait_until(lambda: in_use() <= base), \
        "terminated pools left %d bytes in the pool: %s" % (in_use() - base, stats())

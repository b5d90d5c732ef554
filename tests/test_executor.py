"""concurrent.futures.ProcessPoolExecutor with mp_context=dragon_mp.get_context().

The executor is stdlib's: it needs from the context a Process, a Queue-like
call queue (stdlib's multiprocessing.queues.Queue built on ctx.Lock and
ctx.BoundedSemaphore) and a SimpleQueue whose `_reader` it can wait on with
multiprocessing.connection.wait and read with `_reader.recv()`.
"""

import concurrent.futures as cf
import multiprocessing
import os
import signal
import sys
import threading
import time

import pytest

import dragon_mp

from conftest import child_pids, wait_until

JOIN = 60
TEST_TIMEOUT = 120


class ExecutorThreadCrashed(Exception):
    """A thread of the executor died: its futures would never complete."""


class TimedOut(Exception):
    pass


@pytest.fixture(autouse=True)
def fail_fast():
    """Turn the ways a broken executor hangs into prompt test failures.

    If the executor's manager thread (it feeds the call queue and reads the
    result queue) dies of an exception, every future it left pending fails
    with that exception at once and the executor counts as broken, so the
    test fails where it waits instead of hanging. A test still running after
    TEST_TIMEOUT fails as well. Worker processes left blocked by a broken
    executor are killed afterwards (and reported), so that conftest's leak
    check does not wait for them forever.
    """
    old_hook = threading.excepthook

    def hook(args):
        old_hook(args)
        crash = ExecutorThreadCrashed(
            f'{args.thread.name}: {args.exc_type.__name__}: {args.exc_value}')
        executor_ref = getattr(args.thread, 'executor_reference', None)
        executor = executor_ref() if executor_ref is not None else None
        if executor is not None:
            executor._broken = str(crash)          # later submits raise BrokenProcessPool
        pending = getattr(args.thread, 'pending_work_items', None) or {}
        for work_item in list(pending.values()):
            try:
                work_item.future.set_exception(crash)
            except Exception:       # already done
                pass

    def on_alarm(signum, frame):
        raise TimedOut(f'test still running after {TEST_TIMEOUT} s')

    old_alrm = signal.signal(signal.SIGALRM, on_alarm)
    threading.excepthook = hook
    signal.alarm(TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.alarm(0)
        threading.excepthook = old_hook
        signal.signal(signal.SIGALRM, old_alrm)
    left = multiprocessing.active_children()
    for p in left:
        p.kill()
        p.join(10)
    assert not left, f'worker processes left running: {left}'


@pytest.fixture(params=['stdlib-spawn', 'dragon_mp'])
def ctx(request):
    if request.param == 'stdlib-spawn':
        return multiprocessing.get_context('spawn')
    return dragon_mp.get_context()


def square(x):
    return x * x


def pid_and(x):
    return os.getpid(), x


def fail(x):
    raise ValueError(f'bad {x}')


def sleep_then(x, delay):
    time.sleep(delay)
    return x


def die(code):
    os._exit(code)


_init_value = None


def init(value):
    global _init_value
    _init_value = value


def read_init():
    return _init_value


def workers_left():
    """Live children of this process, but for the dragon_mp run's reaper."""
    import dragon_mp._runtime as rt
    return [pid for pid in child_pids() if pid != rt.reaper_pid()]


def alive(pid):
    try:
        with open(f'/proc/{pid}/stat', 'rb') as f:
            return f.read().rsplit(b')', 1)[1].split()[0] != b'Z'
    except FileNotFoundError:
        return False


def test_submit_and_map(ctx):
    with cf.ProcessPoolExecutor(max_workers=2, mp_context=ctx) as ex:
        assert ex.submit(square, 7).result(timeout=JOIN) == 49
        futures = [ex.submit(square, i) for i in range(20)]
        assert [f.result(timeout=JOIN) for f in futures] == [i * i for i in range(20)]
        assert list(ex.map(square, range(50), timeout=JOIN)) == [i * i for i in range(50)]
        assert list(ex.map(square, range(50), chunksize=7, timeout=JOIN)) == \
            [i * i for i in range(50)]
        pids = {pid for pid, _ in ex.map(pid_and, range(20), timeout=JOIN)}
        assert 1 <= len(pids) <= 2 and os.getpid() not in pids
        if ctx is dragon_mp.get_context():
            assert all(isinstance(p, dragon_mp.Process) for p in ex._processes.values())
    assert not any(alive(pid) for pid in pids)


def test_exceptions_propagate(ctx):
    with cf.ProcessPoolExecutor(max_workers=2, mp_context=ctx) as ex:
        f = ex.submit(fail, 3)
        with pytest.raises(ValueError, match='bad 3'):
            f.result(timeout=JOIN)
        assert isinstance(f.exception(), ValueError)
        with pytest.raises(ValueError, match='bad 1'):
            list(ex.map(fail, [1, 2], timeout=JOIN))
        # The pool is still usable after a task failed.
        assert ex.submit(square, 3).result(timeout=JOIN) == 9


def test_initializer_and_max_tasks_per_child(ctx):
    with cf.ProcessPoolExecutor(max_workers=2, mp_context=ctx, initializer=init,
                                initargs=('ready',)) as ex:
        assert ex.submit(read_init).result(timeout=JOIN) == 'ready'
    if sys.version_info < (3, 11):
        return                                 # ProcessPoolExecutor has max_tasks_per_child since 3.11
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx, max_tasks_per_child=1) as ex:
        pids = [ex.submit(pid_and, i).result(timeout=JOIN)[0] for i in range(3)]
    assert len(set(pids)) == 3                 # a new worker for every task


def test_shutdown_cleanly(ctx):
    ex = cf.ProcessPoolExecutor(max_workers=2, mp_context=ctx)
    futures = [ex.submit(sleep_then, i, 0.05) for i in range(6)]
    pids = {pid for pid, _ in ex.map(pid_and, range(4), timeout=JOIN)}
    ex.shutdown(wait=True)
    assert [f.result() for f in futures] == list(range(6))
    assert not any(alive(pid) for pid in pids)
    assert workers_left() == []
    with pytest.raises(RuntimeError):
        ex.submit(square, 1)

    ex = cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx)
    first = ex.submit(sleep_then, 'first', 0.5)
    rest = [ex.submit(sleep_then, i, 0.5) for i in range(10)]
    ex.shutdown(wait=True, cancel_futures=True)
    assert first.result() == 'first'
    assert sum(f.cancelled() for f in rest) >= 7
    assert wait_until(lambda: workers_left() == [])


def test_dead_worker_breaks_the_pool(ctx):
    with cf.ProcessPoolExecutor(max_workers=2, mp_context=ctx) as ex:
        assert ex.submit(square, 2).result(timeout=JOIN) == 4
        with pytest.raises(cf.process.BrokenProcessPool):
            ex.submit(die, 3).result(timeout=JOIN)
        with pytest.raises(cf.process.BrokenProcessPool):
            ex.submit(square, 2)
    assert wait_until(lambda: workers_left() == [])

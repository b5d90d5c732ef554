"""Tests for dragon_mp.pool.Pool.

Every test runs against each context in CONTEXTS; `ctx.Pool(...)` always
builds *our* Pool (dragon_mp.pool.Pool) on that context's Process and Queue.
To run the suite on dragon_mp's own processes and queues, add one entry to
CONTEXTS (and, if it starts helper processes such as the run's reaper as
children of this process, name them in _helper_pids()).

Functions sent to workers live at module top level so they pickle by
reference; spawned children import this module by name.
"""

import faulthandler
import gc
import importlib
import multiprocessing
import multiprocessing.context
import multiprocessing.resource_tracker
import os
import pickle
import signal
import sys
import threading
import time
import warnings

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

try:
    from dragon_mp import pool as dpool
except Exception:                                   # pragma: no cover
    # dragon_mp/__init__.py is being written by others and may not import;
    # pool.py needs nothing from the package, so load it as a top-level
    # module.  Appending (not prepending) the directory keeps its modules from
    # shadowing stdlib ones; spawned children inherit sys.path, so they find
    # `pool` (and `pool.worker`) under the same name.
    sys.path.append(os.path.join(_ROOT, 'dragon_mp'))
    dpool = importlib.import_module('pool')


# The one place to add implementations: name -> factory of a context object
# (.Process, .Queue/.SimpleQueue, .cpu_count).
CONTEXTS = {
    "stdlib-spawn": lambda: multiprocessing.get_context("spawn"),
    "dragon": lambda: __import__("dragon_mp").get_context(),
}

# Each test must finish well within this, or the run is aborted with every
# thread's traceback instead of hanging forever.
_WATCHDOG_SECONDS = 120
_TIMEOUT = 30           # for every get(): a hang becomes a failure


class _PoolContext:
    """A context whose Pool() is dragon_mp.pool.Pool over the wrapped one."""

    def __init__(self, name, inner):
        self.name = name
        self.inner = inner

    def __getattr__(self, attr):
        return getattr(self.inner, attr)

    def Pool(self, processes=None, initializer=None, initargs=(),
             maxtasksperchild=None):
        return dpool.Pool(processes, initializer, initargs, maxtasksperchild,
                          context=self.inner)

    def __repr__(self):
        return '<_PoolContext %s>' % self.name


@pytest.fixture(scope="module", params=list(CONTEXTS))
def ctx(request):
    yield _PoolContext(request.param, CONTEXTS[request.param]())


# ---------------------------------------------------------------------------
# Leak checks

def _helper_pids():
    """Long-lived helper children that are not pool workers."""
    pids = set()
    tracker = multiprocessing.resource_tracker._resource_tracker
    if getattr(tracker, '_pid', None):
        pids.add(tracker._pid)
    # dragon_mp's reaper lives as long as the run (tests/conftest.py ends the
    # run after each test and checks it is gone).
    runtime = sys.modules.get('dragon_mp._runtime')
    if runtime is not None:
        try:
            pid = runtime.reaper_pid()
        except Exception:
            pid = None
        if pid:
            pids.add(pid)
    return pids


def _child_pids():
    """Pids (zombies included) whose parent is this process, from /proc."""
    me = os.getpid()
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces and ')'.
        fields = stat.rsplit(')', 1)[1].split()
        if int(fields[1]) == me:
            found.append(int(entry))
    return found


def _leftovers():
    helpers = _helper_pids()
    children = [p for p in _child_pids() if p not in helpers]
    threads = [t.name for t in threading.enumerate()
               if t.name.startswith('dragon_mp.pool') and t.is_alive()]
    return multiprocessing.active_children(), children, threads


@pytest.fixture(autouse=True)
def no_leftovers():
    faulthandler.dump_traceback_later(_WATCHDOG_SECONDS, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
    # Pools are terminated/joined by the tests: everything should be gone at
    # once; the short grace only absorbs the kernel reparenting/reaping.
    deadline = time.monotonic() + 3
    while any(_leftovers()) and time.monotonic() < deadline:
        time.sleep(0.05)
    active, children, threads = _leftovers()
    assert active == [], 'Process objects still alive: %r' % (active,)
    assert children == [], 'child processes left: %r' % (children,)
    assert threads == [], 'pool threads left: %r' % (threads,)
    # stdlib's queues register their semaphores with the resource tracker, a
    # child of this process that tests/conftest.py would count as a leak.
    # Once the test's queues are garbage, stop the tracker (the next stdlib
    # semaphore starts a new one).  A closed stdlib Queue's feeder thread
    # still holds its semaphores until it has exited: wait for those first
    # (one that never exits is a leak: it is blocked on a dead worker's lock).
    gc.collect()
    feeders = [t for t in threading.enumerate() if t.name == 'QueueFeederThread']
    for t in feeders:
        t.join(10)
    assert not any(t.is_alive() for t in feeders), 'stdlib queue feeder stuck'
    gc.collect()
    multiprocessing.resource_tracker._resource_tracker._stop()


# ---------------------------------------------------------------------------
# Functions run by workers (module level: pickled by reference)

def _sq(x):
    return x * x


def _add(a, b):
    return a + b


def _identity(x):
    return x


def _sleep(secs):
    time.sleep(secs)
    return secs


def _scrambled(x):
    # Later items finish first within each group of 4.
    time.sleep(0.01 * (3 - x % 4))
    return x


def _slow_pid(_):
    time.sleep(0.05)
    return os.getpid()


def _raise_value_error(msg):
    raise ValueError(msg)


def _fail_on(x, bad):
    if x == bad:
        raise KeyError(x)
    return x


def _return_lambda():
    return lambda: None


class _BadReduceError(Exception):
    """Pickles, but cannot be unpickled: __init__ needs two arguments and
    Exception.__reduce__ passes only self.args (one)."""

    def __init__(self, a, b):
        super().__init__(a)


def _raise_bad_reduce():
    raise _BadReduceError('a', 'b')


_INIT_VALUE = None


def _init(value):
    global _INIT_VALUE
    _INIT_VALUE = value


def _get_init(_):
    return _INIT_VALUE


def _announce_and_sleep(path, secs):
    """Publish our pid in `path` (atomically), then sleep."""
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write(str(os.getpid()))
    os.rename(tmp, path)
    time.sleep(secs)
    return os.getpid()


def _exit_on(x, bad):
    if x == bad:
        # Give a queue with a feeder thread (stdlib's) time to flush the
        # "task started" message; dragon_mp's put is synchronous.
        time.sleep(0.2)
        os._exit(3)
    time.sleep(0.05)
    return x


# ---------------------------------------------------------------------------
# Helpers

def _wait_for_pid_file(path, timeout=_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                return int(f.read())
        except (OSError, ValueError):
            time.sleep(0.02)
    raise AssertionError('worker never wrote %s' % path)


def _join_within(pool, timeout):
    """pool.join(), failing the test instead of hanging past `timeout`."""
    t = threading.Thread(target=pool.join, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), 'pool.join() did not return in %ss' % timeout


class _CpuCountContext:
    def __init__(self, inner, n):
        self._inner = inner
        self._n = n

    def __getattr__(self, attr):
        return getattr(self._inner, attr)

    def cpu_count(self):
        return self._n


# ---------------------------------------------------------------------------
# Tests

def test_map(ctx):
    with ctx.Pool(2) as pool:
        assert pool.map(_sq, []) == []
        assert pool.map(_sq, range(50)) == [x * x for x in range(50)]
        assert pool.map(_sq, range(20), chunksize=1) == [x * x for x in range(20)]
        assert pool.map(_sq, range(30), chunksize=1000) == [x * x for x in range(30)]
        # an iterator without __len__
        assert pool.map(_sq, iter(range(7))) == [x * x for x in range(7)]


def test_map_async_callback(ctx):
    got = []
    errors = []
    with ctx.Pool(2) as pool:
        r = pool.map_async(_sq, range(10), callback=got.append,
                           error_callback=errors.append)
        assert r.get(timeout=_TIMEOUT) == [x * x for x in range(10)]
        assert r.ready() and r.successful()
        assert got == [[x * x for x in range(10)]]
        assert errors == []

        r = pool.starmap_async(_fail_on, [(1, 3), (3, 3), (2, 3)],
                               callback=got.append, error_callback=errors.append)
        with pytest.raises(KeyError):
            r.get(timeout=_TIMEOUT)
        assert len(errors) == 1 and isinstance(errors[0], KeyError)
        assert len(got) == 1                    # the failed map called no callback


def test_imap_order(ctx):
    with ctx.Pool(2) as pool:
        it = pool.imap(_scrambled, range(16))
        assert [it.next(timeout=_TIMEOUT) for _ in range(16)] == list(range(16))
        with pytest.raises(StopIteration):
            it.next(timeout=_TIMEOUT)
        assert list(pool.imap(_scrambled, range(17), chunksize=3)) == list(range(17))
        assert list(pool.imap(_sq, (x for x in range(5)))) == [0, 1, 4, 9, 16]
        assert list(pool.imap(_sq, [])) == []
        with pytest.raises(ValueError):
            pool.imap(_sq, range(3), chunksize=0)


def test_imap_unordered(ctx):
    with ctx.Pool(2) as pool:
        it = pool.imap_unordered(_scrambled, range(16))
        got = [it.next(timeout=_TIMEOUT) for _ in range(16)]
        assert sorted(got) == list(range(16))
        with pytest.raises(StopIteration):
            it.next(timeout=_TIMEOUT)
        got = list(pool.imap_unordered(_scrambled, range(21), chunksize=4))
        assert sorted(got) == list(range(21))


def test_imap_exception_in_iterable(ctx):
    def gen():
        yield 1
        yield 2
        raise OSError('iterable broke')
    with ctx.Pool(2) as pool:
        it = pool.imap(_sq, gen())
        assert it.next(timeout=_TIMEOUT) == 1
        assert it.next(timeout=_TIMEOUT) == 4
        with pytest.raises(OSError, match='iterable broke'):
            it.next(timeout=_TIMEOUT)


def test_starmap(ctx):
    pairs = [(i, 10 * i) for i in range(25)]
    with ctx.Pool(2) as pool:
        assert pool.starmap(_add, pairs) == [a + b for a, b in pairs]
        assert pool.starmap(_add, pairs, chunksize=1) == [a + b for a, b in pairs]
        r = pool.starmap_async(_add, pairs, chunksize=7)
        assert r.get(timeout=_TIMEOUT) == [a + b for a, b in pairs]
        assert pool.starmap(_add, []) == []


def test_apply_and_callbacks(ctx):
    done = []
    failed = []
    with ctx.Pool(2) as pool:
        assert pool.apply(_add, (2, 3)) == 5
        assert pool.apply(_add, (), {'a': 1, 'b': 2}) == 3
        r = pool.apply_async(_sq, (7,), callback=done.append,
                             error_callback=failed.append)
        assert r.get(timeout=_TIMEOUT) == 49
        assert r.successful()
        r = pool.apply_async(_raise_value_error, ('bad',), callback=done.append,
                             error_callback=failed.append)
        r.wait(_TIMEOUT)
        assert r.ready() and not r.successful()
        assert done == [49]
        assert len(failed) == 1 and isinstance(failed[0], ValueError)


def test_callback_that_raises_does_not_hang(ctx, capsys):
    def bad_callback(value):
        raise RuntimeError('callback broke')
    with ctx.Pool(1) as pool:
        r = pool.apply_async(_sq, (3,), callback=bad_callback)
        assert r.get(timeout=_TIMEOUT) == 9
        assert pool.apply_async(_sq, (4,)).get(timeout=_TIMEOUT) == 16
    assert 'callback broke' in capsys.readouterr().err


def test_exception_carries_remote_traceback(ctx):
    with ctx.Pool(2) as pool:
        r = pool.apply_async(_raise_value_error, ('boom',))
        with pytest.raises(ValueError, match='boom') as info:
            r.get(timeout=_TIMEOUT)
        cause = info.value.__cause__
        assert isinstance(cause, dpool.RemoteTraceback)
        assert '_raise_value_error' in str(cause)
        assert 'ValueError: boom' in str(cause)

        with pytest.raises(KeyError) as info:
            pool.starmap(_fail_on, [(x, 5) for x in range(10)], chunksize=2)
        assert isinstance(info.value.__cause__, dpool.RemoteTraceback)
        # the pool is still fine
        assert pool.map(_sq, range(5)) == [0, 1, 4, 9, 16]


def test_unpicklable_result_and_exception(ctx):
    with ctx.Pool(2) as pool:
        with pytest.raises(dpool.MaybeEncodingError):
            pool.apply_async(_return_lambda).get(timeout=_TIMEOUT)
        # An exception that pickles but cannot be rebuilt in the parent (it
        # would kill stdlib's result handler and hang the pool).
        with pytest.raises(dpool.MaybeEncodingError):
            pool.apply_async(_raise_bad_reduce).get(timeout=_TIMEOUT)
        assert pool.apply_async(_sq, (6,)).get(timeout=_TIMEOUT) == 36


def test_get_timeout(ctx):
    assert dpool.TimeoutError is multiprocessing.context.TimeoutError
    with ctx.Pool(2) as pool:
        r = pool.apply_async(_sleep, (1.5,))
        t0 = time.monotonic()
        with pytest.raises(multiprocessing.TimeoutError):
            r.get(timeout=0.1)
        assert time.monotonic() - t0 < 1.0
        assert not r.ready()
        with pytest.raises(ValueError):
            r.successful()
        it = pool.imap(_sleep, [1.0])
        with pytest.raises(multiprocessing.TimeoutError):
            it.next(timeout=0.05)
        assert r.get(timeout=_TIMEOUT) == 1.5
        assert r.successful()
        assert it.next(timeout=_TIMEOUT) == 1.0


def test_initializer(ctx):
    with ctx.Pool(2, initializer=_init, initargs=('ready',)) as pool:
        assert pool.map(_get_init, range(8), chunksize=1) == ['ready'] * 8


def test_maxtasksperchild(ctx):
    with ctx.Pool(2, maxtasksperchild=1) as pool:
        pids = pool.map(_slow_pid, range(6), chunksize=1)
        # each worker ran exactly one task, so every task saw a new process
        assert len(set(pids)) == 6
        assert os.getpid() not in pids
        # the worker handler keeps the pool at its size
        deadline = time.monotonic() + _TIMEOUT
        while len(pool._pool) != 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(pool._pool) == 2


def test_repopulate_from_the_program_while_workers_are_replaced(ctx):
    # CPython's test_pool_worker_lifetime calls pool._repopulate_pool() from
    # its own thread; the worker handler replaces retiring workers at the same
    # time. Both must add workers without breaking the pool (dragon_mp's
    # worker handler once died of it: no free task slot).
    with ctx.Pool(3, maxtasksperchild=2) as pool:
        results = [pool.apply_async(_sq, (i,)) for i in range(60)]
        deadline = time.monotonic() + _TIMEOUT
        while not all(r.ready() for r in results) and time.monotonic() < deadline:
            pool._repopulate_pool()
            time.sleep(0.001)
        assert [r.get(_TIMEOUT) for r in results] == [i * i for i in range(60)]
        pool._repopulate_pool()
        assert pool.map(_sq, range(10)) == [i * i for i in range(10)]
        handler = pool._worker_handler
        assert handler.is_alive()


def test_close_join(ctx):
    pool = ctx.Pool(2)
    results = [pool.apply_async(_sleep, (0.2,)) for _ in range(4)]
    mapped = pool.map_async(_sq, range(10))
    workers = list(pool._pool)
    pool.close()
    assert 'state=CLOSE' in repr(pool)
    _join_within(pool, _TIMEOUT)
    assert all(r.ready() and r.get(0) == 0.2 for r in results)
    assert mapped.get(0) == [x * x for x in range(10)]
    assert all(w.exitcode == 0 for w in workers)
    pool.terminate()            # after join: harmless


def test_value_error_when_not_running(ctx):
    pool = ctx.Pool(1)
    pool.close()
    for call in (lambda: pool.apply(_sq, (1,)),
                 lambda: pool.apply_async(_sq, (1,)),
                 lambda: pool.map(_sq, [1]),
                 lambda: pool.map_async(_sq, [1]),
                 lambda: pool.starmap(_add, [(1, 2)]),
                 lambda: pool.starmap_async(_add, [(1, 2)]),
                 lambda: pool.imap(_sq, [1]),
                 lambda: pool.imap_unordered(_sq, [1])):
        with pytest.raises(ValueError, match='Pool not running'):
            call()
    with pytest.raises(ValueError, match='Pool not running'):
        pool.__enter__()
    _join_within(pool, _TIMEOUT)

    pool = ctx.Pool(1)
    with pytest.raises(ValueError, match='still running'):
        pool.join()
    pool.terminate()
    with pytest.raises(ValueError, match='Pool not running'):
        pool.apply_async(_sq, (1,))
    pool.join()


def test_bad_arguments(ctx):
    with pytest.raises(ValueError):
        ctx.Pool(0)
    with pytest.raises(ValueError):
        ctx.Pool(-3)
    with pytest.raises(TypeError):
        ctx.Pool(1, initializer=3)
    with pytest.raises(ValueError):
        ctx.Pool(1, maxtasksperchild=0)
    with pytest.raises(ValueError):
        ctx.Pool(1, maxtasksperchild=1.5)
    assert multiprocessing.active_children() == []


def test_processes_default_to_cpu_count(ctx):
    with dpool.Pool(context=_CpuCountContext(ctx.inner, 1)) as pool:
        assert len(pool._pool) == 1
        assert pool.map(_sq, range(4)) == [0, 1, 4, 9]


def test_repr_and_pickle(ctx):
    pool = ctx.Pool(2)
    name = '%s.Pool' % type(pool).__module__
    assert repr(pool) == '<%s state=RUN pool_size=2>' % name
    with pytest.raises(NotImplementedError):
        pickle.dumps(pool)
    pool.terminate()
    assert repr(pool) == '<%s state=TERMINATE pool_size=2>' % name


def test_context_manager(ctx):
    with ctx.Pool(2) as pool:
        assert pool.map(_sq, range(4)) == [0, 1, 4, 9]
        workers = list(pool._pool)
    assert 'state=TERMINATE' in repr(pool)
    assert all(w.exitcode is not None for w in workers)
    with pytest.raises(ValueError, match='Pool not running'):
        pool.map(_sq, range(4))


def test_terminate_while_tasks_run(ctx, tmp_path):
    pool = ctx.Pool(2)
    a = pool.apply_async(_announce_and_sleep, (str(tmp_path / 'a'), 60))
    b = pool.apply_async(_announce_and_sleep, (str(tmp_path / 'b'), 60))
    queued = pool.map_async(_sleep, [60] * 6, chunksize=1)
    pids = {_wait_for_pid_file(str(tmp_path / 'a')),
            _wait_for_pid_file(str(tmp_path / 'b'))}
    t0 = time.monotonic()
    pool.terminate()
    assert time.monotonic() - t0 < 5
    assert not a.ready() and not b.ready() and not queued.ready()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    pool.join()


def test_unpicklable_argument_fails_only_that_task(ctx):
    with ctx.Pool(2) as pool:
        bad = pool.apply_async(_identity, (lambda: 1,))
        good = pool.apply_async(_identity, ('fine',))
        with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
            bad.get(timeout=_TIMEOUT)
        assert good.get(timeout=_TIMEOUT) == 'fine'
        with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
            pool.map(_identity, [1, lambda: 2, 3], chunksize=1)
        assert pool.map(_sq, range(10)) == [x * x for x in range(10)]
        it = pool.imap(_identity, [1, threading.Lock(), 3])
        assert it.next(timeout=_TIMEOUT) == 1
        with pytest.raises(TypeError):
            it.next(timeout=_TIMEOUT)
        assert it.next(timeout=_TIMEOUT) == 3


def test_worker_killed_by_sigkill(ctx, tmp_path):
    with ctx.Pool(2) as pool:
        victim = pool.apply_async(_announce_and_sleep,
                                  (str(tmp_path / 'victim'), 60))
        other = pool.apply_async(_announce_and_sleep,
                                 (str(tmp_path / 'other'), 0.5))
        pid = _wait_for_pid_file(str(tmp_path / 'victim'))
        time.sleep(0.1)     # see _exit_on: let a feeder-thread queue flush
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(dpool.WorkerLostError, match='SIGKILL'):
            victim.get(timeout=_TIMEOUT)
        assert other.get(timeout=_TIMEOUT) != pid
        # the dead worker was replaced and the pool keeps working
        pids = set(pool.map(_slow_pid, range(8), chunksize=1))
        assert pid not in pids
        assert len(pool._pool) == 2


def test_worker_os_exit_fails_map(ctx):
    with ctx.Pool(2) as pool:
        r = pool.starmap_async(_exit_on, [(x, 2) for x in range(6)], chunksize=1)
        with pytest.raises(dpool.WorkerLostError, match='exitcode 3'):
            r.get(timeout=_TIMEOUT)
        assert pool.map(_sq, range(6)) == [x * x for x in range(6)]


class _NoRawArrayContext:
    """A context without shared arrays: workers announce tasks by message."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, attr):
        if attr == 'RawArray':
            raise AttributeError(attr)
        return getattr(self._inner, attr)


def test_worker_death_without_task_slots(ctx, tmp_path):
    # The fallback of contexts without RawArray: the _STARTED message.
    with dpool.Pool(2, context=_NoRawArrayContext(ctx.inner)) as pool:
        assert pool._slots is None
        assert pool.map(_sq, range(10), chunksize=1) == [x * x for x in range(10)]
        victim = pool.apply_async(_announce_and_sleep,
                                  (str(tmp_path / 'victim'), 60))
        pid = _wait_for_pid_file(str(tmp_path / 'victim'))
        time.sleep(0.1)     # see _exit_on: let a feeder-thread queue flush
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(dpool.WorkerLostError, match='SIGKILL'):
            victim.get(timeout=_TIMEOUT)
        r = pool.starmap_async(_exit_on, [(x, 2) for x in range(6)], chunksize=1)
        with pytest.raises(dpool.WorkerLostError, match='exitcode 3'):
            r.get(timeout=_TIMEOUT)
        assert pool.map(_sq, range(6)) == [x * x for x in range(6)]


def test_worker_slots_are_cleared_and_reused(ctx):
    with ctx.Pool(2, maxtasksperchild=1) as pool:
        slots = pool._slots
        assert slots is not None
        # every worker exits after one task and is replaced in its slot
        assert pool.map(_sq, range(8), chunksize=1) == [x * x for x in range(8)]
        assert pool.apply_async(_sq, (3,)).get(_TIMEOUT) == 9
        # once the replacements are up, each slot belongs to a live worker
        # and says "idle": the worker clears it just after putting its result,
        # so the result can arrive a moment before the clear (waited for too)
        deadline = time.monotonic() + _TIMEOUT
        while True:
            owners, workers = list(slots.owners), list(pool._pool)
            states = [slots.words[k * dpool._SLOT_WORDS] for k in range(2)]
            if (len(workers) == 2 and all(w.is_alive() for w in workers)
                    and sorted(map(id, owners)) == sorted(map(id, workers)) and states == [0, 0]):
                break
            assert time.monotonic() < deadline, (owners, workers, states)
            time.sleep(0.02)


class _ListQueue:
    """An outqueue for _handle_results: hands out the given messages, then
    reports Empty (the handler then sees its state)."""

    def __init__(self, msgs, thread_state):
        self._msgs = list(msgs)
        self._state = thread_state

    def get(self, timeout=None):
        if self._msgs:
            return self._msgs.pop(0)
        threading.current_thread()._state = self._state
        raise dpool.queue.Empty


class _Recorder:
    def __init__(self):
        self.got = {}

    def _set(self, i, obj):
        self.got[i] = obj


def _result_msg(obj, job, i, pid):
    return pickle.dumps(obj, 5) + dpool._RESULT_TRAILER.pack(job, i, pid)


@pytest.mark.parametrize("slot_claim", [True, False])
def test_result_handler_death_bookkeeping(slot_claim):
    """A worker that dies after putting the result of the task it claimed
    (before clearing its slot) lost nothing; one that dies before lost
    exactly that task; an idle one lost nothing."""
    rec = _Recorder()
    cache = {7: rec}

    def died(pid, claimed):
        if slot_claim:
            return (dpool._DIED, pid, -9, claimed)
        return (dpool._DIED, pid, -9, None)

    msgs = []
    if not slot_claim:
        msgs += [(dpool._STARTED, 100, 7, 0), (dpool._STARTED, 200, 7, 1)]
    msgs += [_result_msg((True, 'a'), 7, 0, 100), died(100, (7, 0)),
             died(200, (7, 1)), died(300, None)]
    t = threading.Thread(target=dpool.Pool._handle_results,
                         args=(_ListQueue(msgs, dpool.TERMINATE), cache))
    t._state = dpool.RUN
    t.start()
    t.join(_TIMEOUT)
    assert not t.is_alive()
    assert rec.got[0] == (True, 'a')
    ok, err = rec.got[1]
    assert not ok and isinstance(err, dpool.WorkerLostError)
    assert 'SIGKILL' in str(err) and 'task 1 of job 7' in str(err)
    assert set(rec.got) == {0, 1}


class _Unusual:
    pass


@pytest.mark.parametrize('queue_of', ['dragon_mp', 'stdlib'])
def test_task_and_result_messages(queue_of):
    # A task or result message is pickle(obj) + trailer on any queue (a
    # dragon_mp Queue's C put_with/get_msg, or bytes through a stdlib
    # context's queue); what was put as an object (None, a tuple) comes
    # back as that object.
    import dragon_mp
    q = dragon_mp.Queue() if queue_of == 'dragon_mp' else multiprocessing.get_context('spawn').Queue()
    put_with, get = dpool._message_io(q)
    cases = [((_sq, (3,), {}), (5, 6)), ((abs, (-1.5, 'x', b'y', None, True), {}), (7, 8)),
             ((_add, (1,), {'b': 2}), (0, 2**40)), ((_identity, (_Unusual,), {}), (1, 1)),
             ((True, b'z' * 300_000), (9, 10)), ((False, [1.0] * 50_000), (-1, 3))]
    for obj, (job, i) in cases:
        put_with(obj, dpool._TASK_TRAILER.pack(job, i))
        msg = dpool._decode(get(timeout=_TIMEOUT))
        assert dpool._TASK_TRAILER.unpack_from(msg, len(msg) - 16) == (job, i)
        assert pickle.loads(msg) == obj
    for obj in (None, (dpool._STARTED, 1, 2, 3)):
        put_with(obj)
        assert dpool._decode(get(timeout=_TIMEOUT)) == obj


def test_apply_result_wait_semantics(ctx):
    with ctx.Pool(1) as pool:
        r = pool.apply_async(_sleep, (0.3,))
        assert not r.ready()
        r.wait(-1)                      # a negative timeout does not wait
        r.wait(0)
        assert not r.ready()
        seen = []
        waiters = [threading.Thread(target=lambda: seen.append(r.get(_TIMEOUT)))
                   for _ in range(4)]
        for w in waiters:
            w.start()
        for w in waiters:
            w.join(_TIMEOUT)
        assert seen == [0.3] * 4
        assert r.ready() and r.successful()
        r.wait()
        r.wait(0)


def test_garbage_collected_pool_is_terminated(ctx):
    pool = ctx.Pool(2)
    assert pool.map(_sq, range(3)) == [0, 1, 4]
    workers = list(pool._pool)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ResourceWarning)
        del pool
        gc.collect()
    for w in workers:
        w.join(_TIMEOUT)
        assert w.exitcode is not None


@pytest.mark.parametrize("where", ["pool.ThreadPool", "dummy.Pool"])
def test_thread_pools(where):
    import importlib
    module, name = where.rsplit(".", 1)
    cls = getattr(importlib.import_module("dragon_mp." + module), name)
    with cls(2) as tp:
        assert tp.map(abs, range(-3, 3)) == [3, 2, 1, 0, 1, 2]
        assert tp.apply_async(pow, (2, 5)).get(timeout=10) == 32

"""RLock, Condition, Event and Barrier: in one process and across processes.

Every behaviour test runs twice, through the `impl` fixture: against stdlib
multiprocessing ('spawn' context: the reference the assertions are checked
against) and against dragon_mp. Targets of child processes are module-level
functions, so both implementations pickle them by reference.
"""

import faulthandler
import gc
import json
import multiprocessing
import multiprocessing.context
import os
import pickle
import queue
import re
import signal
import sys
import threading
import time

import pytest

import dragon_mp
from dragon_mp import synchronize as dsync

JOIN = 30           # every join / get: a hang becomes a failure
SETTLE = 0.3        # "nothing else happens" windows


# --- the two implementations ---------------------------------------------------------------

def _dragon_wired(name):
    """True once context.py makes dragon_mp.<name>() a dragon_mp.synchronize object."""
    ours = getattr(type(dragon_mp.context._default_context), name, None)
    return ours is not None and ours is not getattr(multiprocessing.context.BaseContext, name)


class Impl:
    def __init__(self, name, ctx, sync):
        self.name = name
        self.ctx = ctx                  # Process, Queue
        self._sync = sync               # where RLock & co come from (None: the context)

    def __getattr__(self, attr):
        if self._sync is not None and attr in ('Lock', 'RLock', 'Condition', 'Event', 'Barrier'):
            return getattr(self._sync, attr)
        return getattr(self.ctx, attr)

    def __repr__(self):
        return self.name


class _DragonSync:
    """dragon_mp's primitives: from the context once wired, else from the module."""

    def __getattr__(self, name):
        if _dragon_wired(name):
            return getattr(dragon_mp, name)
        return getattr(dsync, name)


STD = Impl('stdlib-spawn', multiprocessing.get_context('spawn'), None)
DMP = Impl('dragon_mp', dragon_mp, _DragonSync())


@pytest.fixture(params=[STD, DMP], ids=repr)
def impl(request):
    return request.param


@pytest.fixture(autouse=True)
def watchdog():
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()
    gc.collect()


def run(impl, target, *args):
    p = impl.Process(target=target, args=args)
    p.start()
    return p


def join_all(procs):
    for p in procs:
        p.join(JOIN)
    assert [p.exitcode for p in procs] == [0] * len(procs)


def get_n(q, n):
    return [q.get(timeout=JOIN) for _ in range(n)]


def assert_nothing(q, window=SETTLE):
    with pytest.raises(queue.Empty):
        item = q.get(timeout=window)
        pytest.fail(f'unexpected {item!r}')


# --- child process targets -------------------------------------------------------------------

def rlock_hold(lock, held, go):
    lock.acquire()
    assert lock.acquire(timeout=1)          # recursion never waits
    held.set()
    assert go.wait(JOIN)
    lock.release()
    lock.release()


def rlock_intervals(lock, q, rounds):
    # CLOCK_MONOTONIC is system-wide: intervals of different processes compare.
    spans = []
    for _ in range(rounds):
        with lock:
            with lock:
                enter = time.monotonic()
                time.sleep(0.001)
                spans.append((enter, time.monotonic()))
    q.put(spans)


def rlock_foreign_release(lock, q):
    try:
        lock.release()
    except AssertionError as e:
        q.put(('AssertionError', str(e)))
    else:
        q.put(('released', None))


def cond_waiter(cond, ready, results, timeout):
    with cond:
        ready.put(os.getpid())
        results.put(cond.wait(timeout))


def cond_wait_for_flag(cond, flag, ready, results):
    with cond:
        ready.put(os.getpid())
        results.put(cond.wait_for(flag.is_set, JOIN))


def cond_notify_later(cond, delay):
    time.sleep(delay)
    with cond:
        cond.notify()


def event_waiter(event, ready, results, timeout):
    ready.put(os.getpid())
    start = time.monotonic()
    results.put((event.wait(timeout), time.monotonic() - start))


def event_set_later(event, delay):
    time.sleep(delay)
    event.set()


class RecordAction:
    """A Barrier action: picklable, records which process ran it."""

    def __init__(self, q):
        self.q = q

    def __call__(self):
        self.q.put(('action', os.getpid()))


def barrier_rounds(barrier, q, rounds):
    for r in range(rounds):
        q.put(('index', r, barrier.wait(JOIN)))


def barrier_wait_expect_broken(barrier, q, timeout):
    try:
        barrier.wait(timeout)
    except threading.BrokenBarrierError:
        q.put('broken')
    else:
        q.put('passed')


def use_all(rlock, cond, event, barrier, q):
    """A child that gets every primitive (through a Queue or as arguments)."""
    if rlock is None:
        rlock, cond, event, barrier = q.get(timeout=JOIN)
    with rlock:
        q.put(('rlock', (repr(rlock), multiprocessing.current_process().name)))
    with cond:
        cond.notify_all()
    event.set()
    q.put(('barrier', barrier.wait(JOIN)))


# --- RLock -------------------------------------------------------------------------------------

def test_rlock_recursion_and_reprs(impl):
    lock = impl.RLock()
    assert repr(lock) == '<RLock(None, 0)>'
    assert lock.acquire()
    assert lock.acquire(block=False)
    assert lock.acquire(timeout=0.01)
    assert repr(lock) == '<RLock(MainProcess, 3)>'
    with lock:
        assert repr(lock) == '<RLock(MainProcess, 4)>'
    for _ in range(3):
        lock.release()
    assert repr(lock) == '<RLock(None, 0)>'
    with pytest.raises(AssertionError, match='attempt to release recursive lock not owned by thread'):
        lock.release()
    assert lock.__enter__() is True
    lock.__exit__(None, None, None)


def test_rlock_other_thread(impl):
    lock = impl.RLock()
    held, go = threading.Event(), threading.Event()

    def holder():
        with lock:
            held.set()
            go.wait(JOIN)

    t = threading.Thread(target=holder, name='holder')
    t.start()
    assert held.wait(JOIN)
    try:
        assert repr(lock) == '<RLock(SomeOtherThread, nonzero)>'
        assert not lock.acquire(block=False)
        start = time.monotonic()
        assert not lock.acquire(timeout=0.1)
        assert time.monotonic() - start >= 0.09
        assert not lock.acquire(timeout=-1)         # negative: just try
        with pytest.raises(AssertionError, match='not owned by thread'):
            lock.release()
    finally:
        go.set()
        t.join(JOIN)
    assert lock.acquire(timeout=JOIN)
    lock.release()


def test_rlock_repr_in_a_thread(impl):
    lock = impl.RLock()
    seen = []

    def run_in_thread():
        with lock:
            with lock:
                seen.append(repr(lock))

    t = threading.Thread(target=run_in_thread, name='T1')
    t.start()
    t.join(JOIN)
    assert seen == ['<RLock(MainProcess|T1, 2)>']


def test_rlock_held_by_child(impl):
    lock, held, go, q = impl.RLock(), impl.Event(), impl.Event(), impl.Queue()
    p = run(impl, rlock_hold, lock, held, go)
    try:
        assert held.wait(JOIN)
        assert repr(lock) == '<RLock(SomeOtherProcess, nonzero)>'
        assert not lock.acquire(block=False)
        assert not lock.acquire(timeout=0.1)
        with pytest.raises(AssertionError, match='not owned by thread'):
            lock.release()
    finally:
        go.set()
    assert lock.acquire(timeout=JOIN)
    assert repr(lock) == '<RLock(MainProcess, 1)>'
    # A child cannot release what the parent holds.
    c = run(impl, rlock_foreign_release, lock, q)
    assert q.get(timeout=JOIN) == ('AssertionError',
                                   'attempt to release recursive lock not owned by thread')
    lock.release()
    join_all([p, c])


def test_rlock_excludes_across_processes(impl):
    lock, q = impl.RLock(), impl.Queue()
    rounds, workers = 15, 3
    ps = [run(impl, rlock_intervals, lock, q, rounds) for _ in range(workers)]
    spans = sorted(span for spans in get_n(q, workers) for span in spans)
    join_all(ps)
    assert len(spans) == rounds * workers
    for (_, leave), (enter, _) in zip(spans, spans[1:]):
        assert leave <= enter, 'two processes held the RLock at once'


# --- Condition ---------------------------------------------------------------------------------

def test_condition_in_one_process(impl):
    cond = impl.Condition()
    assert repr(cond) == '<Condition(<RLock(None, 0)>, 0)>'
    with pytest.raises(AssertionError, match=re.escape('must acquire() condition before using wait()')):
        cond.wait(0.01)
    with pytest.raises(AssertionError, match='lock is not owned'):
        cond.notify()
    with pytest.raises(AssertionError, match='lock is not owned'):
        cond.notify_all()
    with cond:
        with cond:                      # recursive: wait releases every level
            start = time.monotonic()
            assert cond.wait(0.1) is False
            assert time.monotonic() - start >= 0.09
            assert repr(cond) == '<Condition(<RLock(MainProcess, 2)>, 0)>'
            assert cond.wait(-1) is False
            cond.notify()               # nobody waits: nothing happens
            cond.notify_all()
            start = time.monotonic()
            assert cond.wait_for(lambda: 0, timeout=0.1) == 0
            assert time.monotonic() - start >= 0.09
            assert cond.wait_for(lambda: 'yes', timeout=0) == 'yes'
    assert repr(cond) == '<Condition(<RLock(None, 0)>, 0)>'
    assert cond.acquire() and cond.acquire(False)
    cond.release()
    cond.release()


def test_condition_with_a_lock(impl):
    lock = impl.Lock()
    cond = impl.Condition(lock)
    assert repr(cond) == '<Condition(<Lock(owner=None)>, 0)>'
    with cond:
        assert repr(cond) == '<Condition(<Lock(owner=MainProcess)>, 0)>'
        assert not cond.wait(0.05)
        assert not lock.acquire(False)      # held again after the wait
    assert lock.acquire(False)
    lock.release()


@pytest.mark.parametrize('lock_kind', ['RLock', 'Lock'])
def test_condition_notify_across_processes(impl, lock_kind):
    cond = impl.Condition(getattr(impl, lock_kind)())
    ready, results = impl.Queue(), impl.Queue()
    ps = [run(impl, cond_waiter, cond, ready, results, JOIN) for _ in range(3)]
    get_n(ready, 3)
    with cond:                          # every child is inside wait() now
        cond.notify()
    assert results.get(timeout=JOIN) is True
    assert_nothing(results)
    with cond:
        cond.notify(1)
    assert results.get(timeout=JOIN) is True
    assert_nothing(results)
    with cond:
        cond.notify_all()
    assert results.get(timeout=JOIN) is True
    join_all(ps)
    assert repr(cond).endswith(', 0)>')


def test_condition_notify_n_and_all(impl):
    cond, ready, results = impl.Condition(), impl.Queue(), impl.Queue()
    ps = [run(impl, cond_waiter, cond, ready, results, JOIN) for _ in range(4)]
    get_n(ready, 4)
    with cond:
        cond.notify(2)
    assert get_n(results, 2) == [True, True]
    assert_nothing(results)
    with cond:
        cond.notify_all()
    assert get_n(results, 2) == [True, True]
    join_all(ps)


def test_condition_wait_timeouts_across_processes(impl):
    cond, ready, results = impl.Condition(), impl.Queue(), impl.Queue()
    # A waiter that times out returns False and does not absorb a later notify.
    quick = run(impl, cond_waiter, cond, ready, results, 0.2)
    get_n(ready, 1)
    assert results.get(timeout=JOIN) is False
    quick.join(JOIN)
    patient = run(impl, cond_waiter, cond, ready, results, JOIN)
    get_n(ready, 1)
    with cond:
        cond.notify()
    assert results.get(timeout=JOIN) is True
    join_all([quick, patient])


def test_condition_wait_for_across_processes(impl):
    cond, flag = impl.Condition(), impl.Event()
    ready, results = impl.Queue(), impl.Queue()
    ps = [run(impl, cond_wait_for_flag, cond, flag, ready, results) for _ in range(2)]
    get_n(ready, 2)
    with cond:
        cond.notify_all()               # predicate still false: they wait on
    assert_nothing(results)
    with cond:
        flag.set()
        cond.notify_all()
    assert get_n(results, 2) == [True, True]
    join_all(ps)


def test_condition_parent_waits_for_child_notify(impl):
    cond = impl.Condition()
    with cond:
        p = run(impl, cond_notify_later, cond, 0.2)
        assert cond.wait(JOIN) is True
    join_all([p])


# --- Event ---------------------------------------------------------------------------------------

def assert_repr(pattern, obj):
    """repr(obj) matches pattern, from 3.11 on: in 3.10 stdlib's Event and threading.Barrier (which
    both implementations' Barrier subclass) have object's repr."""
    if sys.version_info >= (3, 11):
        assert re.fullmatch(pattern, repr(obj)), repr(obj)


def test_event_in_one_process(impl):
    e = impl.Event()
    assert_repr(r'<Event at 0x[0-9a-f]+ unset>', e)
    assert e.is_set() is False
    start = time.monotonic()
    assert e.wait(0.1) is False
    assert time.monotonic() - start >= 0.09
    assert e.wait(0) is False and e.wait(-1) is False
    e.set()
    e.set()
    assert_repr(r'<Event at 0x[0-9a-f]+ set>', e)
    assert e.is_set() is True
    assert e.wait() is True and e.wait(0) is True
    e.clear()
    assert e.is_set() is False and e.wait(0.01) is False


def test_event_across_processes(impl):
    e, ready, results = impl.Event(), impl.Queue(), impl.Queue()
    waiters = [run(impl, event_waiter, e, ready, results, JOIN) for _ in range(3)]
    timer = run(impl, event_waiter, e, ready, results, 0.2)
    get_n(ready, 4)
    flag, elapsed = results.get(timeout=JOIN)       # the one with a short timeout
    assert flag is False and elapsed >= 0.19
    assert_nothing(results, 0.1)
    e.set()
    assert [r[0] for r in get_n(results, 3)] == [True] * 3
    join_all(waiters + [timer])
    # A child sets it for the parent.
    e.clear()
    setter = run(impl, event_set_later, e, 0.1)
    assert e.wait(JOIN) is True
    join_all([setter])


# --- Barrier -------------------------------------------------------------------------------------

def test_barrier_in_one_process(impl):
    b = impl.Barrier(2, timeout=5)
    assert (b.parties, b.n_waiting, b.broken) == (2, 0, False)
    assert_repr(r'<[\w.]+\.Barrier at 0x[0-9a-f]+: waiters=0/2>', b)
    start = time.monotonic()
    with pytest.raises(threading.BrokenBarrierError):
        b.wait(0.1)
    assert time.monotonic() - start >= 0.09
    assert b.broken
    assert_repr(r'<[\w.]+\.Barrier at 0x[0-9a-f]+: broken>', b)
    with pytest.raises(threading.BrokenBarrierError):
        b.wait(5)                       # broken: raises at once
    b.reset()
    assert not b.broken and b.n_waiting == 0
    b1 = impl.Barrier(1)
    assert b1.wait() == 0 and b1.wait() == 0


def test_barrier_three_processes(impl):
    q = impl.Queue()
    rounds = 2
    b = impl.Barrier(3, action=RecordAction(q))
    ps = [run(impl, barrier_rounds, b, q, rounds) for _ in range(3)]
    items = get_n(q, (3 + 1) * rounds)
    join_all(ps)
    actions = [i for i in items if i[0] == 'action']
    assert len(actions) == rounds               # once per round
    assert {pid for _, pid in actions} <= {p.pid for p in ps}
    for r in range(rounds):
        assert sorted(i[2] for i in items if i[0] == 'index' and i[1] == r) == [0, 1, 2]
    assert not b.broken and b.n_waiting == 0


def test_barrier_parent_and_children(impl):
    q = impl.Queue()
    b = impl.Barrier(3)
    ps = [run(impl, barrier_rounds, b, q, 1) for _ in range(2)]
    mine = b.wait(JOIN)
    indices = [mine] + [i[2] for i in get_n(q, 2)]
    assert sorted(indices) == [0, 1, 2]
    join_all(ps)


def test_barrier_timeout_breaks_it_for_everyone(impl):
    q = impl.Queue()
    b = impl.Barrier(3)
    p = run(impl, barrier_wait_expect_broken, b, q, None)
    wait_until(lambda: b.n_waiting == 1)
    with pytest.raises(threading.BrokenBarrierError):
        b.wait(0.2)
    assert q.get(timeout=JOIN) == 'broken'
    assert b.broken
    join_all([p])


def test_barrier_abort(impl):
    q = impl.Queue()
    b = impl.Barrier(2)
    p = run(impl, barrier_wait_expect_broken, b, q, JOIN)
    assert wait_until(lambda: b.n_waiting == 1)
    b.abort()
    assert q.get(timeout=JOIN) == 'broken'
    assert b.broken and b.n_waiting == 0
    with pytest.raises(threading.BrokenBarrierError):
        b.wait(1)
    join_all([p])


def test_barrier_reset(impl):
    q = impl.Queue()
    b = impl.Barrier(2)
    p = run(impl, barrier_wait_expect_broken, b, q, JOIN)
    assert wait_until(lambda: b.n_waiting == 1)
    b.reset()                           # the waiter gets BrokenBarrierError ...
    assert q.get(timeout=JOIN) == 'broken'
    join_all([p])
    assert not b.broken                 # ... and the barrier is usable again
    p = run(impl, barrier_wait_expect_broken, b, q, JOIN)
    b.wait(JOIN)
    assert q.get(timeout=JOIN) == 'passed'
    join_all([p])


# --- passing objects ---------------------------------------------------------------------------

def test_every_primitive_passed_to_a_child(impl):
    q = impl.Queue()
    rlock, cond, event, barrier = impl.RLock(), impl.Condition(), impl.Event(), impl.Barrier(2)
    p = run(impl, use_all, rlock, cond, event, barrier, q)
    assert barrier.wait(JOIN) in (0, 1)
    assert event.wait(JOIN)
    got = dict(get_n(q, 2))
    text, name = got['rlock']
    assert text == f'<RLock({name}, 1)>' and name != 'MainProcess'   # the child's own view
    assert got['barrier'] in (0, 1)
    join_all([p])


def test_dragon_primitives_through_a_queue():
    # stdlib lets these objects reach a child only as Process arguments;
    # dragon_mp's pickle anywhere (each pickle takes a reference).
    q = dragon_mp.Queue()
    rlock, cond, event, barrier = (DMP.RLock(), DMP.Condition(), DMP.Event(), DMP.Barrier(2))
    p = dragon_mp.Process(target=use_all, args=(None, None, None, None, q))
    p.start()
    q.put((rlock, cond, event, barrier))
    assert barrier.wait(JOIN) in (0, 1)
    assert event.wait(JOIN)
    got = dict(get_n(q, 2))
    text, name = got['rlock']
    assert text == f'<RLock({name}, 1)>'
    join_all([p])


def test_dragon_pickle_round_trip_shares_state():
    rlock, cond, event = DMP.RLock(), DMP.Condition(DMP.Lock()), DMP.Event()
    barrier = DMP.Barrier(1, action=None, timeout=3)
    r2, c2, e2, b2 = pickle.loads(pickle.dumps((rlock, cond, event, barrier)))
    with rlock:
        assert repr(r2) == '<RLock(MainProcess, 1)>' and r2._is_owned()
    e2.set()
    assert event.is_set()
    with c2:
        assert not cond._lock.acquire(False)    # one lock behind both
    assert (b2.parties, b2._timeout) == (1, 3)
    barrier.abort()
    assert b2.broken


def test_dragon_objects_free_their_memory():
    def in_use():
        return json.loads(dragon_mp._core.call(dragon_mp._core.gocore().RuntimeStats))['in_use']

    dragon_mp._runtime.current()
    gc.collect()
    before = in_use()
    objs = [DMP.RLock(), DMP.Condition(), DMP.Event(), DMP.Barrier(2)]
    cond = objs[1]
    with cond:
        for _ in range(3):
            cond.wait(0.01)             # each wait allocates and frees a node
    copies = pickle.loads(pickle.dumps(objs))
    assert in_use() > before
    del objs, copies, cond
    gc.collect()
    assert in_use() == before


def test_dragon_condition_skips_a_killed_waiter():
    # A waiter killed inside wait() must not swallow the next notify (stdlib's
    # semaphore design can hang the notifier here); its node is freed.
    def in_use():
        return json.loads(dragon_mp._core.call(dragon_mp._core.gocore().RuntimeStats))['in_use']

    cond, ready, results = DMP.Condition(), dragon_mp.Queue(), dragon_mp.Queue()
    victim = run(DMP, cond_waiter, cond, ready, results, JOIN)
    get_n(ready, 1)
    with cond:                          # the victim is inside wait()
        pass
    victim.kill()
    victim.join(JOIN)
    survivor = run(DMP, cond_waiter, cond, ready, results, JOIN)
    get_n(ready, 1)
    with cond:
        assert repr(cond).endswith(', 2)>')     # the victim still counts ...
        before = in_use()
        cond.notify()
        assert in_use() < before                # ... until notify drops it
    assert results.get(timeout=JOIN) is True
    join_all([survivor])
    assert repr(cond).endswith(', 0)>')


def test_dragon_semaphores_serve_stdlib_queues():
    # stdlib's multiprocessing.queues (and so concurrent.futures) reach into
    # sem._semlock._get_value() / _is_zero() of the context's semaphores.
    import multiprocessing.queues as mq
    q = mq.Queue(2, ctx=dragon_mp.get_context())
    try:
        assert isinstance(q._sem, dsync.BoundedSemaphore)
        assert q.qsize() == 0 and not q.full()
        q.put(1)
        q.put(2)
        assert q.qsize() == 2 and q.full()
        assert q.get(timeout=JOIN) == 1
        assert q.qsize() == 1 and not q.full()
    finally:
        q.close()
        q.join_thread()
    s = DMP.Lock()
    with s:
        assert s._semlock._is_mine() and s._semlock._is_zero()     # held: value 0
    assert not s._semlock._is_mine() and not s._semlock._is_zero()


# --- Ctrl-C: blocking waits are interruptible, and the objects stay consistent --------------

class Interrupted(Exception):
    pass


def _interrupt_after(seconds):
    def handler(signum, frame):
        raise Interrupted
    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    return old


@pytest.mark.parametrize('what', ['event', 'condition', 'rlock'])
def test_blocking_waits_are_interruptible(impl, what):
    if what == 'rlock':
        lock, held, go = impl.RLock(), impl.Event(), impl.Event()
        p = run(impl, rlock_hold, lock, held, go)
        assert held.wait(JOIN)
        block = lock.acquire
    elif what == 'event':
        e = impl.Event()
        block = e.wait
    else:
        cond = impl.Condition()
        cond.acquire()
        block = cond.wait
    old = _interrupt_after(0.2)
    start = time.monotonic()
    try:
        with pytest.raises(Interrupted):
            block()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert time.monotonic() - start < 0.2 + 1.0
    if what == 'rlock':
        go.set()
        join_all([p])
    elif what == 'condition':
        # The interrupted wait took the lock back and left no waiter behind.
        assert repr(cond) == '<Condition(<RLock(MainProcess, 1)>, 0)>'
        cond.notify()
        cond.release()


def wait_until(predicate, timeout=JOIN):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# --- wiring ------------------------------------------------------------------------------------

@pytest.mark.parametrize('name', ['RLock', 'Condition', 'Event', 'Barrier'])
def test_dragon_context_makes_dragon_objects(name):
    if not _dragon_wired(name):
        pytest.skip(f'dragon_mp.context does not override {name}() yet')
    args = (2,) if name == 'Barrier' else ()
    assert isinstance(getattr(dragon_mp, name)(*args), getattr(dsync, name))


# dragon_mp internals: an RLock owner identity keeps the node index of a
# multi-node run (bits 54..62), so equal pids on two hosts never share one.
def test_rlock_owner_identity_carries_the_node():
    import subprocess
    import sys
    code = ('import dragon_mp; from dragon_mp import synchronize as s; '
            'l = dragon_mp.RLock(); l.acquire(); '
            'print(s._owner_id() >> 54, (s._owner_id() >> 32) & 0x3fffff == __import__("os").getpid(), '
            'l._owner() == s._owner_id()); l.release()')
    env = {k: v for k, v in os.environ.items() if not k.startswith('DRAGON_MP_')}
    env.update(DRAGON_MP_NODE='5')
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.split() == ['5', 'True', 'True'], out.stderr

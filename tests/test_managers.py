"""Managers: SyncManager proxies, custom managers, remote managers, shutdown.

Every behaviour test runs twice: against stdlib multiprocessing ('spawn'
context, the reference) and against dragon_mp, whose manager servers must
start as dragon_mp processes.
"""

import multiprocessing
import multiprocessing.managers as std_managers
import queue
import time
import types

import pytest

import dragon_mp
import dragon_mp.managers as dmp_managers

JOIN = 30


# --- the two implementations ---------------------------------------------------------------

class Impl:
    def __init__(self, name, ctx, managers, manager_kwargs):
        self.name = name
        self.ctx = ctx                      # Process, Queue, ... of this implementation
        self.managers = managers            # its managers module
        self.kw = manager_kwargs            # what a manager class needs to use ctx

    def Manager(self):
        """The module-level Manager(): a started SyncManager."""
        return self.ctx.Manager()


STD = Impl('stdlib-spawn', multiprocessing.get_context('spawn'), std_managers,
           {'ctx': multiprocessing.get_context('spawn')})
DMP = Impl('dragon_mp', dragon_mp, dmp_managers, {})      # ctx defaults to dragon_mp's


@pytest.fixture(params=[STD, DMP], ids=lambda impl: impl.name)
def impl(request):
    return request.param


def assert_server_process(impl, manager):
    """A dragon_mp manager's server is a dragon_mp process."""
    if impl is DMP:
        assert isinstance(manager._process, dragon_mp.Process), type(manager._process)
    assert manager._process.is_alive()


def run_all(procs):
    for p in procs:
        p.start()
    for p in procs:
        p.join(JOIN)
    assert [p.exitcode for p in procs] == [0] * len(procs)


# --- targets (module level: children import them) ------------------------------------------

def fill_containers(k, d, l, ns, value, array, lock):
    with lock:
        d[k] = k * k
        l.append(k)
        ns.total += k
        value.value += 1
        array[k] = k + 100


def produce(q, items):
    for item in items:
        q.put(item)


def consume(q, n, out):
    out.extend([q.get(timeout=JOIN) for _ in range(n)])


def try_lock(lock, out):
    out.append(('first', lock.acquire(timeout=0.2)))
    # The parent releases after seeing 'first'.
    out.append(('second', lock.acquire(timeout=JOIN)))
    lock.release()


def rlock_twice(rlock, out):
    with rlock:
        with rlock:
            out.append('in')


def wait_event(event, out):
    out.append(event.wait(JOIN))


def wait_condition(cond, state, out):
    with cond:
        ok = cond.wait_for(lambda: state.get('go', False), timeout=JOIN)
    out.append(ok)


def bounded_section(sem, lock, counters):
    with sem:
        with lock:
            counters['now'] += 1
            counters['max'] = max(counters['max'], counters['now'])
        time.sleep(0.15)
        with lock:
            counters['now'] -= 1


def pass_barrier(barrier, out):
    out.append(barrier.wait(JOIN))


def square(x):
    return x * x


def fail(x):
    raise ValueError(f'bad {x}')


def use_pool(pool, k, out):
    out.append(('apply', pool.apply(square, (k,))))
    out.append(('map', tuple(pool.map(square, range(k)))))
    # (apply_async/imap return proxies built from the proxy's manager, which an
    # unpickled proxy does not have: stdlib 3.11 fails those in children too.)
    out.append(('starmap', tuple(pool.starmap(pow, [(k, 2), (k, 3)]))))


# --- SyncManager: every proxy type from several children -----------------------------------

def test_containers_from_children(impl):
    with impl.Manager() as m:
        assert_server_process(impl, m)
        d, l, ns = m.dict(), m.list(), m.Namespace(total=0)
        value, array, lock = m.Value('i', 0), m.Array('i', [0] * 4), m.Lock()
        run_all([impl.ctx.Process(target=fill_containers, args=(k, d, l, ns, value, array, lock))
                 for k in range(4)])
        assert d.copy() == {k: k * k for k in range(4)}
        assert sorted(l) == [0, 1, 2, 3]
        assert ns.total == 6
        assert value.value == 4
        assert list(array[:]) == [100, 101, 102, 103]
        assert len(array) == 4


def test_queues_between_children(impl):
    with impl.Manager() as m:
        q, out = m.Queue(), m.list()
        procs = [impl.ctx.Process(target=produce, args=(q, range(k * 10, k * 10 + 10)))
                 for k in range(2)]
        procs += [impl.ctx.Process(target=consume, args=(q, 10, out)) for _ in range(2)]
        run_all(procs)
        assert sorted(out) == list(range(20))
        with pytest.raises(queue.Empty):
            q.get(timeout=0.1)

        jq = m.JoinableQueue()
        for i in range(3):
            jq.put(i)
        assert [jq.get() for _ in range(3)] == [0, 1, 2]
        for _ in range(3):
            jq.task_done()
        jq.join()


def test_lock_and_rlock_are_shared(impl):
    with impl.Manager() as m:
        lock, out = m.Lock(), m.list()
        lock.acquire()
        p = impl.ctx.Process(target=try_lock, args=(lock, out))
        p.start()
        deadline = time.monotonic() + JOIN
        while len(out) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert list(out) == [('first', False)]        # the parent holds it
        lock.release()
        p.join(JOIN)
        assert p.exitcode == 0
        assert list(out) == [('first', False), ('second', True)]

        rlock, out = m.RLock(), m.list()
        rlock.acquire()
        p = impl.ctx.Process(target=rlock_twice, args=(rlock, out))
        p.start()
        time.sleep(0.3)
        assert list(out) == []
        rlock.release()
        p.join(JOIN)
        assert p.exitcode == 0 and list(out) == ['in']


def test_event_condition_semaphore_barrier(impl):
    with impl.Manager() as m:
        event, out = m.Event(), m.list()
        procs = [impl.ctx.Process(target=wait_event, args=(event, out)) for _ in range(2)]
        for p in procs:
            p.start()
        time.sleep(0.2)
        assert not event.is_set() and list(out) == []
        event.set()
        for p in procs:
            p.join(JOIN)
            assert p.exitcode == 0
        assert list(out) == [True, True]

        cond, state, out = m.Condition(), m.dict(), m.list()
        procs = [impl.ctx.Process(target=wait_condition, args=(cond, state, out))
                 for _ in range(2)]
        for p in procs:
            p.start()
        time.sleep(0.2)
        with cond:
            state['go'] = True
            cond.notify_all()
        for p in procs:
            p.join(JOIN)
            assert p.exitcode == 0
        assert list(out) == [True, True]

        sem, lock = m.Semaphore(2), m.Lock()
        counters = m.dict(now=0, max=0)
        run_all([impl.ctx.Process(target=bounded_section, args=(sem, lock, counters))
                 for _ in range(4)])
        assert counters['now'] == 0
        assert 1 <= counters['max'] <= 2

        bsem = m.BoundedSemaphore(1)
        bsem.acquire()
        bsem.release()
        with pytest.raises(ValueError):
            bsem.release()

        barrier, out = m.Barrier(3), m.list()
        run_all([impl.ctx.Process(target=pass_barrier, args=(barrier, out)) for _ in range(3)])
        assert sorted(out) == [0, 1, 2]
        assert barrier.parties == 3 and barrier.n_waiting == 0 and not barrier.broken


def test_pool_proxy_from_children(impl):
    # The class itself (dragon_mp's SyncManager registers a dragon_mp Pool),
    # whatever dragon_mp.Manager() builds.
    with impl.managers.SyncManager(**impl.kw) as m:
        assert_server_process(impl, m)
        with m.Pool(2) as pool:
            assert pool.map(square, range(6)) == [0, 1, 4, 9, 16, 25]
            assert pool.apply_async(square, (7,)).get(JOIN) == 49
            assert list(pool.imap(square, range(4))) == [0, 1, 4, 9]
            with pytest.raises(ValueError, match='bad 3'):
                pool.apply(fail, (3,))
            out = m.list()
            run_all([impl.ctx.Process(target=use_pool, args=(pool, k, out)) for k in (2, 3)])
            assert sorted(out) == sorted([('apply', 4), ('map', (0, 1)), ('starmap', (4, 8)),
                                          ('apply', 9), ('map', (0, 1, 4)), ('starmap', (9, 27))])


def test_remote_errors(impl):
    with impl.Manager() as m:
        d, l = m.dict(), m.list([1, 2])
        with pytest.raises(KeyError):
            d['missing']
        with pytest.raises(ValueError):
            l.index(99)
        with pytest.raises(impl.managers.RemoteError):
            # An unknown typeid fails in the server: reported as a RemoteError.
            m._create('no-such-typeid')


# --- shutdown and context-manager use ------------------------------------------------------

def test_start_shutdown_and_context_manager(impl):
    m = impl.managers.SyncManager(**impl.kw)
    m.start()
    assert_server_process(impl, m)
    server = m._process
    d = m.dict(a=1)
    assert d['a'] == 1
    m.shutdown()
    assert server.exitcode == 0
    assert m._state.value == std_managers.State.SHUTDOWN
    with pytest.raises((EOFError, OSError)):           # the server is gone
        d['a']
    with pytest.raises(impl.ctx.ProcessError):
        m.start()
    m.shutdown()                            # a second shutdown does nothing

    with impl.managers.SyncManager(**impl.kw) as m:
        assert_server_process(impl, m)
        server = m._process
        ns = m.Namespace(x=1)
        assert ns.x == 1
    assert server.exitcode == 0
    with pytest.raises(impl.ctx.ProcessError):
        with m:
            pass


def set_flag(flag):
    global _server_flag
    _server_flag = flag


def get_flag():
    return _server_flag


class StdInitManager(std_managers.BaseManager):
    pass


class DmpInitManager(dmp_managers.BaseManager):
    pass


for _cls in (StdInitManager, DmpInitManager):
    _cls.register('get_flag', get_flag)


def test_start_with_initializer(impl):
    cls = DmpInitManager if impl is DMP else StdInitManager
    with pytest.raises(TypeError):
        cls(**impl.kw).start(initializer=42)
    m = cls(**impl.kw)
    m.start(set_flag, ('ready',))
    try:
        assert_server_process(impl, m)
        assert m.get_flag()._getvalue() == 'ready'
    finally:
        m.shutdown()


# --- a BaseManager subclass with user-registered types -------------------------------------

class Counter:
    def __init__(self, start=0):
        self._n = start

    def increment(self, by=1):
        self._n += by
        return self._n

    def get(self):
        return self._n

    def child(self):
        return Counter(self._n * 10)

    def _private(self):
        return 'hidden'


class CounterProxy(std_managers.BaseProxy):
    _exposed_ = ('increment', 'get', 'child')
    _method_to_typeid_ = {'child': 'ChildCounter'}

    def increment(self, by=1):
        return self._callmethod('increment', (by,))

    def get(self):
        return self._callmethod('get')

    def child(self):
        return self._callmethod('child')

    @property
    def value(self):
        return self.get()


def register_counter(cls):
    cls.register('Counter', Counter, CounterProxy)
    cls.register('AutoCounter', Counter)          # AutoProxy: public methods exposed
    # What Counter.child returns, as a proxy (callable None: the result itself is served).
    cls.register('ChildCounter', proxytype=CounterProxy, create_method=False)


class StdCounterManager(std_managers.BaseManager):
    pass


class DmpCounterManager(dmp_managers.BaseManager):
    pass


register_counter(StdCounterManager)
register_counter(DmpCounterManager)


def bump(counter, auto, times):
    for _ in range(times):
        counter.increment()
        auto.increment(2)


def test_custom_manager_registered_type_and_proxy(impl):
    cls = DmpCounterManager if impl is DMP else StdCounterManager
    with cls(**impl.kw) as m:
        assert_server_process(impl, m)
        counter, auto = m.Counter(5), m.AutoCounter()
        assert isinstance(counter, CounterProxy)
        assert isinstance(auto, std_managers.BaseProxy)
        assert not hasattr(auto, '_private')
        run_all([impl.ctx.Process(target=bump, args=(counter, auto, 10)) for _ in range(3)])
        assert counter.value == 35
        assert auto.get() == 60
        child = counter.child()                   # method_to_typeid: a proxy comes back
        assert isinstance(child, CounterProxy)
        assert child.increment() == 351
        assert counter.get() == 35
        assert m._number_of_objects() >= 3
    assert m._process.exitcode == 0


# --- a remote manager: reached by address, authenticated by key ----------------------------

_remote_queue = None


def get_remote_queue():
    global _remote_queue
    if _remote_queue is None:
        _remote_queue = queue.Queue()
    return _remote_queue


class StdRemoteManager(std_managers.BaseManager):
    pass


class DmpRemoteManager(dmp_managers.BaseManager):
    pass


for _cls in (StdRemoteManager, DmpRemoteManager):
    _cls.register('get_queue', get_remote_queue)


def remote_cls(impl):
    return DmpRemoteManager if impl is DMP else StdRemoteManager


def serve(cls, authkey, address_out):
    manager = cls(address=('127.0.0.1', 0), authkey=authkey)
    server = manager.get_server()
    address_out.put(server.address)
    server.serve_forever()


def remote_producer(cls, address, authkey, items):
    manager = cls(address=address, authkey=authkey)
    manager.connect()
    q = manager.get_queue()
    for item in items:
        q.put(item)


def stop_server(impl, address, authkey):
    conn = impl.managers.listener_client['pickle'][1](address, authkey=authkey)
    try:
        impl.managers.dispatch(conn, None, 'shutdown')
    finally:
        conn.close()


def check_remote(impl, cls, address, authkey):
    run_all([impl.ctx.Process(target=remote_producer, args=(cls, address, authkey, [k, k + 10]))
             for k in range(3)])
    client = cls(address=address, authkey=authkey)
    client.connect()
    q = client.get_queue()
    assert sorted(q.get(timeout=JOIN) for _ in range(6)) == [0, 1, 2, 10, 11, 12]
    assert q.empty()
    intruder = cls(address=address, authkey=b'not the key')
    with pytest.raises(multiprocessing.AuthenticationError):
        intruder.connect()
    assert dragon_mp.AuthenticationError is multiprocessing.AuthenticationError


def test_remote_manager_served_by_get_server(impl):
    cls, authkey = remote_cls(impl), b'remote secret'
    address_out = impl.ctx.Queue()
    server = impl.ctx.Process(target=serve, args=(cls, authkey, address_out))
    server.start()
    try:
        address = address_out.get(timeout=JOIN)
        assert address[0] == '127.0.0.1' and address[1] > 0
        check_remote(impl, cls, address, authkey)
        stop_server(impl, address, authkey)
        server.join(JOIN)
        assert server.exitcode == 0
    finally:
        if server.is_alive():
            server.kill()
            server.join()


def test_remote_manager_started_with_start(impl):
    cls, authkey = remote_cls(impl), b'another secret'
    with cls(address=('127.0.0.1', 0), authkey=authkey, **impl.kw) as m:
        assert_server_process(impl, m)
        check_remote(impl, cls, m.address, authkey)
    assert m._process.exitcode == 0


# --- dragon_mp's classes -------------------------------------------------------------------

def test_dragon_classes_are_stdlib_subclasses_on_dragon_context():
    ctx = dragon_mp.context._default_context
    for name in ('BaseManager', 'SyncManager', 'SharedMemoryManager'):
        ours, theirs = getattr(dmp_managers, name), getattr(std_managers, name)
        assert issubclass(ours, theirs) and ours is not theirs, name
        assert issubclass(ours, dmp_managers.BaseManager), name
        assert ours.__module__ == 'dragon_mp.managers'
        assert ours()._ctx is ctx, name
        assert ours(ctx=STD.ctx)._ctx is STD.ctx, name
    # Everything else is stdlib's own object, so proxies interoperate.
    for name in ('BaseProxy', 'Token', 'Namespace', 'RemoteError', 'AutoProxy', 'Server',
                 'DictProxy', 'ListProxy', 'dispatch', 'State', 'Value', 'Array'):
        assert getattr(dmp_managers, name) is getattr(std_managers, name), name
    # Same typeids as stdlib's SyncManager.
    assert set(dmp_managers.SyncManager._registry) == set(std_managers.SyncManager._registry)


def test_registering_on_dragon_classes_leaves_stdlib_alone():
    class Mine(dmp_managers.BaseManager):
        pass
    before = (dict(std_managers.BaseManager._registry), dict(dmp_managers.BaseManager._registry),
              dict(std_managers.SyncManager._registry))
    Mine.register('thing', dict)
    assert 'thing' in Mine._registry
    assert (dict(std_managers.BaseManager._registry), dict(dmp_managers.BaseManager._registry),
            dict(std_managers.SyncManager._registry)) == before
    assert not hasattr(dmp_managers.BaseManager, 'thing')


def test_dragon_manager_function_returns_dragon_syncmanager():
    # dragon_mp.Manager() is BaseContext.Manager: it must build dragon_mp's SyncManager
    # (stdlib's BaseContext.Manager imports multiprocessing.managers.SyncManager).
    m = dragon_mp.Manager()
    try:
        assert isinstance(m._process, dragon_mp.Process)
        assert type(m) is dmp_managers.SyncManager, type(m)
    finally:
        m.shutdown()


def test_module_surface():
    assert dmp_managers.__all__ == std_managers.__all__
    public = [n for n, v in vars(std_managers).items()
              if not n.startswith('_') and not isinstance(v, types.ModuleType)]
    assert [n for n in public if not hasattr(dmp_managers, n)] == []

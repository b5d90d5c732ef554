"""Value, Array, RawValue, RawArray, copy, synchronized and heap.BufferWrapper.

Every test runs twice through the `mp` fixture: once on stdlib's
multiprocessing 'spawn' context and sharedctypes, once on dragon_mp's, so
each assertion is checked against stdlib's behaviour first. Tests that look
at dragon_mp's pool are dragon-only.

Functions run by children live at module top level (pickled by reference;
spawned children import this module by name).
"""

import ctypes
import gc
import json
import multiprocessing
import multiprocessing.context
import multiprocessing.heap
import multiprocessing.sharedctypes
import sys
import time
import types

import pytest

import dragon_mp
import dragon_mp.heap
import dragon_mp.sharedctypes
import dragon_mp.synchronize

JOIN_TIMEOUT = 60


class Point(ctypes.Structure):
    _fields_ = [('x', ctypes.c_double), ('y', ctypes.c_int), ('tag', ctypes.c_char * 8)]


# ---------------------------------------------------------------------------
# The two implementations

def _has_dragon_rlock():
    return getattr(dragon_mp.synchronize, 'RLock', None) is not None


def _stdlib_impl():
    ctx = multiprocessing.get_context('spawn')
    return types.SimpleNamespace(
        name='stdlib', ctx=ctx, sc=multiprocessing.sharedctypes, heap=multiprocessing.heap,
        Value=ctx.Value, Array=ctx.Array, RawValue=ctx.RawValue, RawArray=ctx.RawArray,
        Process=ctx.Process, Lock=ctx.Lock, recursive_default_lock=True)


def _dragon_impl():
    ctx = dragon_mp.get_context()
    sc = dragon_mp.sharedctypes

    def Value(typecode_or_type, *args, lock=True):
        return sc.Value(typecode_or_type, *args, lock=lock, ctx=ctx)

    def Array(typecode_or_type, size_or_initializer, *, lock=True):
        return sc.Array(typecode_or_type, size_or_initializer, lock=lock, ctx=ctx)

    return types.SimpleNamespace(
        name='dragon', ctx=ctx, sc=sc, heap=dragon_mp.heap,
        Value=Value, Array=Array, RawValue=sc.RawValue, RawArray=sc.RawArray,
        Process=dragon_mp.Process, Lock=dragon_mp.Lock,
        # Until dragon_mp.synchronize.RLock exists the default lock is a Lock,
        # which `with v.get_lock(): v.value += 1` would deadlock on.
        recursive_default_lock=_has_dragon_rlock())


@pytest.fixture(params=['stdlib', 'dragon'])
def mp(request):
    return _stdlib_impl() if request.param == 'stdlib' else _dragon_impl()


def run(mp, target, *args):
    p = mp.Process(target=target, args=args)
    p.start()
    p.join(JOIN_TIMEOUT)
    assert p.exitcode == 0, f'child exited with {p.exitcode}'


def in_use():
    from dragon_mp import _core
    return json.loads(_core.gocore().RuntimeStats())['in_use']


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()


# ---------------------------------------------------------------------------
# Functions run by children

def _increment(v, n, nested):
    for _ in range(n):
        with v.get_lock():
            if nested:
                v.value += 1          # takes the (recursive) lock again
            else:
                v.get_obj().value += 1


def _increment_items(arr, n):
    for _ in range(n):
        with arr.get_lock():
            obj = arr.get_obj()
            for i in range(len(obj)):
                obj[i] += i


def _fill(arr, values):
    for i, x in enumerate(values):
        arr[i] = x


def _set_value(v, x):
    v.value = x


def _set_point(p):
    p.x, p.y, p.tag = p.x * 2, p.y + 1, b'child'


def _set_string(s, data):
    s.value = data


def _try_lock(v, result):
    lock = v.get_lock()
    if lock.acquire(timeout=0.2):
        result.value = 1
        lock.release()
    else:
        result.value = 2


def _check_and_mark(arr, expected, ok):
    ok.value = list(arr) == expected
    arr[0] = -1


# ---------------------------------------------------------------------------
# Values

VALUES = [
    ('c', b'x', b'\x00'), ('u', '\xe9', '\x00'), ('b', -3, 0), ('B', 200, 0),
    ('h', -1000, 0), ('H', 60000, 0), ('i', -7, 0), ('I', 4_000_000_000, 0),
    ('l', -2**40, 0), ('L', 2**40, 0), ('q', -2**62, 0), ('Q', 2**63, 0),
    ('f', 1.5, 0.0), ('d', 2.25, 0.0),
]


@pytest.mark.parametrize('typecode,initial,zero', VALUES, ids=[v[0] for v in VALUES])
def test_value_typecodes(mp, typecode, initial, zero):
    v = mp.Value(typecode, initial)
    assert v.value == initial
    assert isinstance(v, mp.sc.Synchronized)
    assert type(v.get_obj()) is mp.sc.typecode_to_type[typecode]
    assert mp.Value(typecode).value == zero
    assert mp.RawValue(typecode, initial).value == initial
    assert mp.RawValue(typecode).value == zero


@pytest.mark.parametrize('ctype,initial', [(ctypes.c_double, 3.5), (ctypes.c_int, 42),
                                           (ctypes.c_bool, True), (ctypes.c_int64, -2**50),
                                           (ctypes.c_uint8, 255)])
def test_value_ctypes_types(mp, ctype, initial):
    v = mp.Value(ctype, initial)
    assert v.value == initial
    assert type(v.get_obj()) is ctype
    v.value = ctype(0).value
    assert v.value == ctype(0).value
    r = mp.RawValue(ctype, initial)
    assert type(r) is ctype and r.value == initial


def test_value_structure(mp):
    v = mp.Value(Point, 1.5, 2, b'abc')
    assert type(v).__name__ == 'SynchronizedPoint'
    assert (v.x, v.y, v.tag) == (1.5, 2, b'abc')
    v.x = 4.0
    v.tag = b'zz'
    obj = v.get_obj()
    assert type(obj) is Point and (obj.x, obj.y, obj.tag) == (4.0, 2, b'zz')
    assert not hasattr(v, 'value')
    raw = mp.RawValue(Point)
    assert (raw.x, raw.y, raw.tag) == (0.0, 0, b'')
    raw = mp.RawValue(Point, 0.0, 9)
    assert (raw.x, raw.y) == (0.0, 9)


def test_value_repr_and_lock_protocol(mp):
    v = mp.Value('i', 5)
    assert repr(v) == '<Synchronized wrapper for c_int(5)>'
    assert v.acquire()
    v.release()
    with v:
        v.get_obj().value = 6
    with v.get_lock():
        pass
    assert v.value == 6


# ---------------------------------------------------------------------------
# Arrays

def test_array_basics(mp):
    a = mp.Array('i', 10)
    assert isinstance(a, mp.sc.SynchronizedArray)
    assert len(a) == 10 and a[:] == [0] * 10
    b = mp.Array('i', range(10))
    assert list(b) == list(range(10))
    assert b[3] == 3 and b[-1] == 9
    assert b[2:5] == [2, 3, 4]
    assert b[::3] == [0, 3, 6, 9]
    b[2:4] = [20, 30]
    b[-2] = 80
    assert b[:] == [0, 1, 20, 30, 4, 5, 6, 7, 80, 9]
    with pytest.raises(IndexError):
        b[10]
    with pytest.raises(IndexError):
        b[10] = 1
    with pytest.raises(ValueError):
        b[0:2] = [1, 2, 3]
    d = mp.Array('d', [0.5, 1.5])
    assert d[:] == [0.5, 1.5]
    assert mp.Array(ctypes.c_double, 3)[:] == [0.0] * 3
    assert len(mp.Array('i', 0)) == 0
    assert repr(mp.Array('i', 2)).startswith('<SynchronizedArray wrapper for <')


def test_raw_array(mp):
    r = mp.RawArray('q', [1, 2, 3])
    assert isinstance(r, ctypes.Array) and r._type_ is ctypes.c_longlong
    assert list(r) == [1, 2, 3] and r[1:] == [2, 3]
    r[0] = -5
    assert r[0] == -5
    z = mp.RawArray(ctypes.c_uint16, 1000)
    assert len(z) == 1000 and not any(z)
    pts = mp.RawArray(Point, 3)
    pts[1].y = 7
    assert [p.y for p in pts] == [0, 7, 0]
    assert len(mp.RawArray('b', 0)) == 0


def test_char_arrays(mp):
    s = mp.Array('c', b'hello world')
    assert isinstance(s, mp.sc.SynchronizedString)
    assert s.value == b'hello world' and s.raw == b'hello world'
    s.value = b'bye'
    assert s.value == b'bye'
    assert s.raw == b'bye\x00o world'
    s.raw = b'HELLO WORLD'
    assert s.value == b'HELLO WORLD'
    assert s[0] == b'H' and s[1:3] == b'EL'
    with pytest.raises(ValueError):
        s.raw = b'x' * 12
    e = mp.Array('c', 5)
    assert e.value == b'' and e.raw == b'\x00' * 5
    raw = mp.RawArray('c', b'abc')
    assert raw.value == b'abc' and raw.raw == b'abc'
    # Only c_char arrays get .value/.raw through the wrapper.
    w = mp.Array('u', 'abc')
    assert isinstance(w, mp.sc.SynchronizedArray) and not hasattr(w, 'value')
    assert w[:] == 'abc' and w.get_obj().value == 'abc'


def test_memory_is_zeroed_on_reuse(mp):
    for _ in range(3):
        a = mp.RawArray('i', 100)
        assert not any(a)
        a[:] = [7] * 100
        del a
        gc.collect()
    v = mp.Value('d')
    assert v.value == 0.0


# ---------------------------------------------------------------------------
# Locks

def test_lock_options(mp):
    raw = mp.Value('i', 1, lock=False)
    assert type(raw) is ctypes.c_int and raw.value == 1
    raw = mp.Array('i', 3, lock=False)
    assert isinstance(raw, ctypes.Array) and not hasattr(raw, 'get_lock')
    for lock in (True, None):
        v = mp.Value('i', 2, lock=lock)
        assert isinstance(v, mp.sc.Synchronized)
        assert hasattr(v.get_lock(), 'acquire')
    lock = mp.Lock()
    v = mp.Value('i', 3, lock=lock)
    assert v.get_lock() is lock
    a = mp.Array('d', 4, lock=lock)
    assert a.get_lock() is lock
    # The value's lock is the lock: holding it blocks the other user.
    with v.get_lock():
        assert not a.get_lock().acquire(timeout=0.05)
    assert a.acquire(timeout=5)
    a.release()


def test_default_lock_is_recursive(mp):
    if not mp.recursive_default_lock:
        pytest.skip('dragon_mp.synchronize.RLock does not exist yet: the default lock is a Lock')
    v = mp.Value('i', 0)
    with v.get_lock():
        v.value += 1
        with v:
            v.value += 1
    assert v.value == 2


def test_bad_lock_arguments(mp):
    with pytest.raises(AttributeError, match=r"^5 has no method 'acquire'$"):
        mp.Value('i', 1, lock=5)
    with pytest.raises(AttributeError, match=r"^'lock' has no method 'acquire'$"):
        mp.Array('i', 3, lock='lock')
    with pytest.raises(AttributeError, match=r"^<object object at .*> has no method 'acquire'$"):
        mp.Value('d', lock=object())


def test_lock_is_shared_with_child(mp):
    v = mp.Value('i', 0)
    result = mp.RawValue('i', 0)
    v.acquire()
    try:
        run(mp, _try_lock, v, result)
    finally:
        v.release()
    assert result.value == 2        # the child could not take the parent's lock
    run(mp, _try_lock, v, result)
    assert result.value == 1        # and took it once free


# ---------------------------------------------------------------------------
# Across processes

def test_counter_four_processes(mp):
    v = mp.Value('i', 0)
    n, workers = 300, 4
    procs = [mp.Process(target=_increment, args=(v, n, mp.recursive_default_lock))
             for _ in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(JOIN_TIMEOUT)
        assert p.exitcode == 0
    assert v.value == n * workers


def test_array_updated_under_lock_by_processes(mp):
    arr = mp.Array('l', 5, lock=mp.Lock())
    n, workers = 100, 3
    procs = [mp.Process(target=_increment_items, args=(arr, n)) for _ in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(JOIN_TIMEOUT)
        assert p.exitcode == 0
    assert arr[:] == [i * n * workers for i in range(5)]


def test_raw_array_written_by_child(mp):
    arr = mp.RawArray('d', 1000)
    values = [i * 0.5 for i in range(1000)]
    run(mp, _fill, arr, values)
    assert arr[:] == values
    # The other way round: the child sees what the parent wrote, and its
    # write is seen here.
    ok = mp.RawValue(ctypes.c_bool, False)
    run(mp, _check_and_mark, arr, values, ok)
    assert ok.value and arr[0] == -1


def test_values_written_by_child(mp):
    v = mp.Value('q', 1)
    raw = mp.RawValue('f', 1.0)
    run(mp, _set_value, v, 2**40)
    run(mp, _set_value, raw, 2.5)
    assert v.value == 2**40 and raw.value == 2.5
    p = mp.RawValue(Point, 1.25, 3, b'parent')
    run(mp, _set_point, p)
    assert (p.x, p.y, p.tag) == (2.5, 4, b'child')
    sp = mp.Value(Point, 1.0, 1)
    run(mp, _set_point, sp)
    assert (sp.x, sp.y, sp.tag) == (2.0, 2, b'child')


def test_string_written_by_child(mp):
    s = mp.Array('c', 16)
    run(mp, _set_string, s, b'from the child')
    assert s.value == b'from the child'
    raw = mp.RawArray('c', b'0123456789')
    run(mp, _set_string, raw, b'abc')
    assert raw.raw == b'abc\x00456789'


def test_slices_and_many_objects_to_child(mp):
    # Several objects, one of them twice, in one process start.
    a = mp.RawArray('i', 8)
    b = mp.Array('i', 8)
    run(mp, _fill, a, range(8))
    run(mp, _fill, b, range(10, 18))
    assert a[2:6] == [2, 3, 4, 5]
    assert b[5:] == [15, 16, 17]


def test_pickle_outside_spawning_refused(mp):
    from multiprocessing.reduction import ForkingPickler
    for obj in (mp.RawValue('i'), mp.RawArray('i', 2), mp.Value('i'), mp.Array('c', 2)):
        with pytest.raises(RuntimeError, match='should only be shared between processes through inheritance'):
            ForkingPickler.dumps(obj)


# ---------------------------------------------------------------------------
# copy, synchronized

def test_copy(mp):
    raw = mp.RawArray('i', [1, 2, 3])
    c = mp.sc.copy(raw)
    assert type(c) is type(raw) and list(c) == [1, 2, 3]
    c[0] = 100
    assert raw[0] == 1
    v = mp.Value('d', 1.5)
    cv = mp.sc.copy(v.get_obj())
    assert type(cv) is ctypes.c_double and cv.value == 1.5
    cv.value = 3.0
    assert v.value == 1.5
    p = mp.RawValue(Point, 1.0, 2, b'p')
    cp = mp.sc.copy(p)
    assert (cp.x, cp.y, cp.tag) == (1.0, 2, b'p')
    with pytest.raises(TypeError):
        mp.sc.copy(v)               # a wrapper is not a ctypes object


def test_copy_is_shared_too(mp):
    c = mp.sc.copy(mp.RawArray('d', [1.0, 2.0]))
    run(mp, _fill, c, [5.0, 6.0])
    assert c[:] == [5.0, 6.0]


def test_synchronized(mp):
    sc = mp.sc
    s = sc.synchronized(mp.RawValue('i', 3))
    assert type(s) is sc.Synchronized and s.value == 3
    s.value = 4
    assert s.get_obj().value == 4
    with pytest.raises(AssertionError, match='object already synchronized'):
        sc.synchronized(s)
    assert type(sc.synchronized(mp.RawArray('c', b'ab'))) is sc.SynchronizedString
    assert type(sc.synchronized(mp.RawArray('i', 2))) is sc.SynchronizedArray
    sp = sc.synchronized(mp.RawValue(Point, 2.0))
    assert type(sp).__name__ == 'SynchronizedPoint' and sp.x == 2.0
    assert isinstance(sp, sc.SynchronizedBase)
    # The same wrapper class for every Point.
    assert type(sc.synchronized(mp.RawValue(Point))) is type(sp)
    lock = mp.Lock()
    sl = sc.synchronized(mp.RawValue('i'), lock)
    assert sl.get_lock() is lock
    # synchronized() of an ordinary ctypes object works too (it is just not shared).
    assert sc.synchronized(ctypes.c_int(5)).value == 5


def test_synchronized_raw_to_child(mp):
    s = mp.sc.synchronized(mp.RawValue('i', 1), mp.Lock())
    run(mp, _set_value, s, 99)
    assert s.value == 99


# ---------------------------------------------------------------------------
# Errors

def test_bad_typecodes(mp):
    for call in (lambda: mp.RawValue('x'), lambda: mp.Value('zz'), lambda: mp.Value('x', lock=False),
                 lambda: mp.Array('x', 3), lambda: mp.RawArray('x', [1, 2]),
                 lambda: mp.RawValue(int), lambda: mp.Array(3, 3)):
        with pytest.raises(TypeError):
            call()
    with pytest.raises(TypeError):
        mp.Value('i', 'not a number')
    with pytest.raises(TypeError):
        mp.RawArray('i', ['a'])
    with pytest.raises(TypeError):
        mp.RawValue('c', 'str, not bytes')
    with pytest.raises(TypeError):
        mp.Array('i', 2.5)
    with pytest.raises(ValueError):
        mp.RawArray('i', -1)


def test_bad_typecode_messages_match_stdlib(mp):
    for call, message in ((lambda: mp.RawValue('x'), 'this type has no size'),
                          (lambda: mp.Array('i', 2.5), "object of type 'float' has no len()")):
        with pytest.raises(TypeError) as info:
            call()
        assert str(info.value) == message


# ---------------------------------------------------------------------------
# heap

def test_buffer_wrapper(mp):
    w = mp.heap.BufferWrapper(64)
    m = w.create_memoryview()
    assert m.nbytes == 64 and m.format == 'B' and not m.readonly
    if mp.name == 'dragon':         # stdlib's blocks are not zeroed (RawValue & co. memset them)
        assert bytes(m) == b'\x00' * 64
    m[:3] = b'abc'
    assert bytes(w.create_memoryview()[:3]) == b'abc'
    assert (ctypes.c_char * 3).from_buffer(m).raw == b'abc'
    with pytest.raises(ValueError, match='out of range'):
        mp.heap.BufferWrapper(-1)
    with pytest.raises(OverflowError, match='too large'):
        mp.heap.BufferWrapper(sys.maxsize)
    assert hasattr(mp.heap, 'Arena') and hasattr(mp.heap, 'Heap')


# ---------------------------------------------------------------------------
# dragon_mp only: pool memory, the objects' kind of memory, the context

def test_pool_memory_returned():
    from dragon_mp import _runtime
    _runtime.current()
    gc.collect()
    baseline = in_use()
    sc = dragon_mp.sharedctypes
    objs = [sc.Value('i', 1), sc.Array('d', 1000), sc.RawValue(Point), sc.RawArray('c', 100_000),
            sc.Array('c', b'abc'), sc.copy(sc.RawArray('i', 10)), sc.RawArray('i', 0),
            dragon_mp.heap.BufferWrapper(5000).create_memoryview()]
    assert in_use() > baseline
    del objs
    gc.collect()
    assert in_use() == baseline
    # References held by children (unpickled, then dropped at exit) too.
    v, arr = sc.Value('i', 0), sc.RawArray('i', 10)
    p = dragon_mp.Process(target=_fill, args=(arr, range(10)))
    p.start()
    p.join(JOIN_TIMEOUT)
    assert p.exitcode == 0
    run(_dragon_impl(), _increment, v, 10, _has_dragon_rlock())
    assert v.value == 10 and arr[:] == list(range(10))
    del v, arr, p
    gc.collect()
    assert wait_until(lambda: in_use() == baseline), (in_use(), baseline)


def test_memory_is_in_the_pool():
    from dragon_mp import _core
    sc = dragon_mp.sharedctypes
    base = _core.fast().pool_base()
    for obj in (sc.RawValue('d'), sc.RawArray('i', 3), sc.Value('i').get_obj(),
                sc.Array('c', 4).get_obj(), sc.copy(sc.RawValue('q'))):
        assert isinstance(obj._wrapper, dragon_mp.heap.BufferWrapper)
        addr = ctypes.addressof(obj)
        assert addr > base and addr % 32 == 0


def test_wrapper_outlives_its_users():
    # A memoryview alone keeps the block: a new allocation does not reuse it.
    m = dragon_mp.heap.BufferWrapper(100).create_memoryview()
    gc.collect()
    m[:] = b'\x01' * 100
    other = dragon_mp.sharedctypes.RawArray('c', 100)
    assert other.raw == b'\x00' * 100 and bytes(m) == b'\x01' * 100
    # A memoryview of an array keeps the array, and so its block.
    arr = dragon_mp.sharedctypes.RawArray('i', [1, 2, 3])
    view = memoryview(arr)
    del arr
    gc.collect()
    assert bytes(view) == bytes((ctypes.c_int * 3)(1, 2, 3))


def test_no_pool_use_before_needed():
    # Creating objects starts the run; a failed creation leaves nothing behind.
    from dragon_mp import _runtime
    _runtime.current()
    gc.collect()
    baseline = in_use()
    for call in (lambda: dragon_mp.sharedctypes.Value('x'),
                 lambda: dragon_mp.sharedctypes.RawArray('i', ['a']),
                 lambda: dragon_mp.sharedctypes.Value('i', lock=5)):
        with pytest.raises((TypeError, AttributeError)):
            call()
    gc.collect()
    assert in_use() == baseline


def test_context_methods():
    if dragon_mp.context.BaseContext.Value is multiprocessing.context.BaseContext.Value:
        pytest.skip('dragon_mp.context does not provide Value/Array/RawValue/RawArray yet')
    for obj in (dragon_mp.Value('i', 1).get_obj(), dragon_mp.Array('i', 2).get_obj(),
                dragon_mp.RawValue('d', 1.0), dragon_mp.RawArray('c', b'x'),
                dragon_mp.get_context('spawn').Value('i', lock=False)):
        assert isinstance(obj._wrapper, dragon_mp.heap.BufferWrapper)
    assert dragon_mp.Value('i', 1, lock=False).value == 1
    assert dragon_mp.Array('i', [1, 2], lock=False)[:] == [1, 2]


def test_buffer_wrapper_pickles_to_the_same_memory():
    import pickle
    from dragon_mp import _runtime
    _runtime.current()
    gc.collect()
    baseline = in_use()
    w = dragon_mp.heap.BufferWrapper(10)
    w.create_memoryview()[:] = b'0123456789'
    w2 = pickle.loads(pickle.dumps(w))          # the receiver's own reference
    m2 = w2.create_memoryview()
    assert bytes(m2) == b'0123456789'
    del w
    gc.collect()
    m2[0:1] = b'X'                              # still alive: w2 holds a reference
    assert bytes(w2.create_memoryview()) == b'X123456789'
    del w2, m2
    gc.collect()
    assert in_use() == baseline


def test_too_large():
    from dragon_mp import _runtime
    _runtime.current()
    gc.collect()
    baseline = in_use()
    with pytest.raises(MemoryError):
        dragon_mp.sharedctypes.RawArray('b', 1 << 50)
    with pytest.raises(OverflowError):
        dragon_mp.heap.BufferWrapper(sys.maxsize)
    gc.collect()
    assert in_use() == baseline

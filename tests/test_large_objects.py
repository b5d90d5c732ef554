"""Large objects through Queue, Pipe and Pool: exact round trips, one copy on
each side, pool blocks given back.

An object holding large buffers (bytes, bytearray, numpy arrays, array.array,
containers of them) is pickled into parts whose payloads are copied once,
straight into the pool, and unpickled from the pool block
(pyext/fastpath_objects.c). These tests check that what arrives is what was
sent (values, type, dtype, shape, strides' order, writability as with stdlib),
that no intermediate copy of the payload is made, and that every pool block
goes back.
"""

import array
import json
import pickle
import time
import tracemalloc

import pytest

import dragon_mp
from dragon_mp import _core

np = pytest.importorskip("numpy")

MiB = 1 << 20


_warm = {}      # run id -> a queue that has carried a large message


def in_use():
    """Bytes in use in the run's pool."""
    q = dragon_mp.Queue()               # (the run starts with the first object)
    run = json.loads(_core.gocore().RuntimeStats())['run']
    if run not in _warm:
        # This process's ledger (where it records the large-message blocks it
        # holds: a pool block of its own) is made at its first large message.
        q.put(bytes(MiB))
        q.get()
        _warm[run] = q
    del q
    return json.loads(_core.gocore().RuntimeStats())['in_use']


def payloads():
    """(name, object) pairs: every kind of large buffer, small and edge cases."""
    rng = np.random.default_rng(5)
    ro = rng.integers(0, 255, 300_000, dtype=np.uint8)
    ro.flags.writeable = False
    return [
        ("bytes", bytes(range(256)) * 4096),
        ("bytearray", bytearray(b"xyz" * 100_000)),
        ("str", "é" * 100_000),
        ("numpy-u8", rng.integers(0, 255, 4 * MiB, dtype=np.uint8)),
        ("numpy-f64-2d", rng.random((512, 300))),
        ("numpy-fortran", np.asfortranarray(rng.random((300, 200)))),
        ("numpy-noncontig", rng.random((400, 400))[::3, 1::2]),
        ("numpy-readonly", ro),
        ("numpy-complex", (rng.random(70_000) + 1j).astype(np.complex128)),
        ("numpy-structured", np.zeros(50_000, dtype=[("a", "i4"), ("b", "f8")])),
        ("numpy-bool", rng.random(200_000) > 0.5),
        ("numpy-0d", np.array(3.5)),
        ("numpy-empty", np.zeros((0, 7))),
        ("numpy-small", np.arange(10)),
        ("array.array", array.array("d", range(50_000))),
        ("several", {"a": rng.random(100_000), "b": bytes(200_000), "c": [bytearray(70_000), b"x"],
                     "d": (rng.integers(0, 9, (256, 256)), "tail")}),
        ("shared-twice", (lambda a: [a, a, {"again": a}])(rng.random(50_000))),
        ("zero-bytes", b""),
        ("small-bytes", b"q" * 100),
    ]


def same(a, b):
    """a == b for the payloads above, with numpy's details (dtype, shape, order)."""
    if isinstance(a, np.ndarray):
        assert type(b) is np.ndarray
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.flags.f_contiguous == b.flags.f_contiguous or a.ndim < 2 or not a.flags.forc
        assert b.flags.writeable, "stdlib's queues deliver writable arrays"
        assert np.array_equal(a, b)
        return
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            same(x, y)
    else:
        assert a == b


PAYLOADS = payloads()
IDS = [name for name, _ in PAYLOADS]


@pytest.mark.parametrize("name,obj", PAYLOADS, ids=IDS)
@pytest.mark.parametrize("kind", ["Queue", "SimpleQueue", "JoinableQueue", "Pipe"])
def test_round_trip_in_process(kind, name, obj):
    if kind == "Pipe":
        r, w = dragon_mp.Pipe(duplex=False)
        base = in_use()
        w.send(obj)
        got = r.recv()
    else:
        q = getattr(dragon_mp, kind)()
        base = in_use()
        q.put(obj)
        got = q.get()
    same(obj, got)
    if name == "shared-twice":
        assert got[0] is got[1] is got[2]["again"], "the pickle's memo keeps shared objects shared"
    del got
    assert in_use() == base


def test_pickle_is_ordinary():
    """What the parts hold, joined, is a pickle any unpickler reads, payloads aligned."""
    from dragon_mp.reduction import dumps_parts
    for _, obj in PAYLOADS:
        parts = dumps_parts(obj)
        same(obj, pickle.loads(b"".join(parts)))
    a = np.arange(MiB, dtype=np.uint8)
    parts = dumps_parts({"a": a})
    assert any(isinstance(p, pickle.PickleBuffer) for p in parts), \
        "the array's buffer is a part of its own, not copied into the pickle"


def _echo(inq, outq):
    while (obj := inq.get()) is not None:
        outq.put(obj)


@pytest.mark.parametrize("maxsize", [0, 2])
def test_round_trip_across_processes(maxsize):
    inq, outq = dragon_mp.Queue(maxsize), dragon_mp.Queue(maxsize)
    p = dragon_mp.Process(target=_echo, args=(inq, outq))
    p.start()
    try:
        for _, obj in PAYLOADS:
            inq.put(obj)
            same(obj, outq.get(timeout=60))
    finally:
        inq.put(None)
        p.join(60)
    assert p.exitcode == 0


def _pipe_echo(conn):
    while True:
        obj = conn.recv()
        if obj is None:
            return
        conn.send(obj)
        conn.send_bytes(memoryview(obj).cast("B") if isinstance(obj, np.ndarray) else obj)


def test_pipe_send_and_send_bytes_across_processes():
    a, b = dragon_mp.Pipe()
    p = dragon_mp.Process(target=_pipe_echo, args=(b,))
    p.start()
    try:
        for obj in (np.arange(MiB, dtype=np.int32), bytearray(3 * MiB), bytes(70_000)):
            a.send(obj)
            same(obj, a.recv())
            raw = a.recv_bytes()
            assert raw == (obj.tobytes() if isinstance(obj, np.ndarray) else bytes(obj))
        buf = bytearray(8 * MiB)
        a.send(np.ones(MiB, np.uint8))
        a.recv()
        assert a.recv_bytes_into(buf, 16) == MiB
        assert buf[16:16 + MiB] == b"\x01" * MiB and buf[:16] == bytes(16)
    finally:
        a.send(None)
        p.join(60)
    assert p.exitcode == 0


def _fill(i):
    return np.full(4 * MiB, i % 251, np.uint8)


def _total(a):
    return int(a.sum(dtype=np.int64)), a.dtype.str, a.shape


def test_pool_numpy_tasks_and_results():
    with dragon_mp.Pool(2) as pool:
        base = in_use()
        res = pool.map(_fill, range(12))
        assert [int(r[0]) for r in res] == [i % 251 for i in range(12)]
        assert all(r.flags.writeable and r.shape == (4 * MiB,) and (r == r[0]).all() for r in res)
        args = [np.full((512, 512), i, np.float32) for i in range(6)]
        assert pool.map(_total, args) == [(512 * 512 * i, "<f4", (512, 512)) for i in range(6)]
        assert pool.apply(_total, (np.arange(2 * MiB),)) == (sum(range(2 * MiB)), "<i8", (2 * MiB,))
        del res
        # what is left is at most each worker's ledger (4 KiB, made at its
        # first large message; freed when it exits)
        assert base <= in_use() <= base + 2 * 4096


def test_sender_makes_no_copy_of_the_payload():
    """put pickles straight into the pool: no allocation of the payload's size on the way."""
    q = dragon_mp.Queue()
    for obj in (np.ones(32 * MiB, np.uint8), bytearray(32 * MiB), {"k": [np.zeros(16 * MiB, np.uint8)]}):
        tracemalloc.start()
        try:
            q.put(obj)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < MiB, "put allocated %d bytes for a %s" % (peak, type(obj).__name__)
        tracemalloc.start()
        try:
            got = q.get()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # the new object only (32 MiB), not a bytes copy of the message before it
        assert peak < 33 * MiB, "get allocated %d bytes" % peak
        del got


def test_message_owns_its_block():
    """recv_msg hands a large message over as a buffer owning its pool block:
    freed by release() or the last reference, never while a view exists,
    and still valid after its channel is gone."""
    fp = _core.fast()
    r, w = dragon_mp.Pipe(duplex=False)
    base = in_use()
    w.send_bytes(b"m" * MiB)
    addr = r._rch._addr
    msg = fp.recv_msg(addr, -1, r._rch._inline)
    assert isinstance(msg, fp.Message) and len(msg) == MiB
    assert in_use() > base
    r.close()
    w.close()
    del r, w                    # the channel is gone; the block is the message's
    base = in_use()
    view = memoryview(msg)
    with pytest.raises(BufferError):
        msg.release()
    assert view[:3] == b"mmm" and view.readonly
    view.release()
    msg.release()
    assert in_use() < base
    msg.release()               # twice: nothing more
    with pytest.raises(ValueError):
        memoryview(msg)
    # the last reference frees it too
    r, w = dragon_mp.Pipe(duplex=False)
    base = in_use()
    w.send_bytes(b"n" * MiB)
    msg = fp.recv_msg(r._rch._addr, -1, r._rch._inline)
    assert in_use() > base
    del msg
    assert in_use() == base


class _Unpicklable:
    def __reduce__(self):
        raise TypeError("no pickling")


def test_unpicklable_large_object_leaves_queue_untouched():
    q = dragon_mp.Queue()
    base = in_use()
    with pytest.raises(TypeError, match="no pickling"):
        q.put([np.ones(MiB), _Unpicklable()])
    with pytest.raises(TypeError):
        q.put(memoryview(bytes(MiB)))           # as stdlib: a memoryview does not pickle
    assert q.empty() and in_use() == base
    a, b = dragon_mp.Pipe()
    with pytest.raises(TypeError, match="no pickling"):
        a.send((bytearray(MiB), _Unpicklable()))
    assert not b.poll(0.1)


def _stall(event):
    event.set()
    time.sleep(3600)


class _Stall:
    """Unpickles into a wait: the receiver stays inside loads, holding the
    message's pool block, after setting event."""

    def __init__(self, event):
        self.event = event

    def __reduce__(self):
        return _stall, (self.event,)


def _receive(q):
    q.get()


def _put(q, obj):
    q.put(obj)


def _wait_until(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.02)
    return cond()


def test_receiver_killed_while_holding_a_block_gives_it_back():
    q = dragon_mp.Queue()
    ev = dragon_mp.Event()
    p = dragon_mp.Process(target=_receive, args=(q,))
    p.start()
    base = in_use()
    q.put([np.ones(16 * MiB, np.uint8), _Stall(ev)])
    assert ev.wait(60), "the receiver never got inside unpickling"
    assert in_use() >= base + 16 * MiB          # the message's block, now the receiver's
    p.kill()
    p.join(30)
    assert _wait_until(lambda: in_use() <= base), \
        "a killed receiver's block was not given back (%d > %d): %s" % (
            in_use(), base, _core.gocore().RuntimeStats())


def test_sender_killed_while_holding_a_block_gives_it_back():
    q = dragon_mp.Queue(1)
    q.put(b"fills the queue")
    base = in_use()
    before = _core.gocore().RuntimeStats()
    p = dragon_mp.Process(target=_put, args=(q, np.ones(16 * MiB, np.uint8)))
    p.start()
    # The sender has filled its block and waits for room: the block is its.
    assert _wait_until(lambda: in_use() >= base + 16 * MiB, 60)
    during = _core.gocore().RuntimeStats()
    p.kill()
    p.join(30)
    assert _wait_until(lambda: in_use() <= base), \
        "a killed sender's block was not given back (%d > %d): before %s during %s after %s" % (
            in_use(), base, before, during, _core.gocore().RuntimeStats())
    assert q.get(timeout=5) == b"fills the queue" and q.empty()


def test_payloads_are_aligned_and_lookalikes_left_alone():
    """In the message, each large payload starts on a 64-byte boundary (the
    padding is no-op opcodes, so the message still unpickles as it is); a
    payload or frame whose last bytes merely look like a payload's opcode is
    not split."""
    fp = _core.fast()
    from dragon_mp.reduction import dumps_parts
    a = np.arange(70_000, dtype=np.uint8) ^ 0x5A
    b = b"\x01" + bytes(range(256)) * 400
    tail = list(range(100_000, 140_000))        # > 64 KiB of opcodes after the payloads: frames
    lookalike = bytearray(90_000)
    obj = ["x" * 3, a, "odd" * 7, b, lookalike, tail]
    # lookalike ends like a BINBYTES8 opcode whose length is that of the part after it
    after = dumps_parts(obj)[-1]
    lookalike[-9:] = b"\x8e" + len(memoryview(after).cast("B")).to_bytes(8, "little")
    assert len(memoryview(dumps_parts(obj)[-1]).cast("B")) == len(memoryview(after).cast("B"))
    r, w = dragon_mp.Pipe(duplex=False)
    w.send(obj)
    msg = fp.recv_msg(r._rch._addr, -1, r._rch._inline)
    with memoryview(msg) as m:
        raw = m.tobytes()
    msg.release()
    for payload in (a.tobytes(), b):
        assert raw.index(payload) % 64 == 0
    got = pickle.loads(raw)
    same(obj[:5], got[:5])
    assert got[5] == tail


def _mapping(addr):
    """The fields of /proc/self/smaps for this process's mapping that holds addr."""
    fields = None
    with open('/proc/self/smaps') as f:
        for line in f:
            head, _, rest = line.partition(' ')
            if '-' in head and not head.endswith(':'):
                if fields is not None:
                    break
                lo, hi = (int(x, 16) for x in head.split('-'))
                if lo <= addr < hi:
                    fields = {}
            elif fields is not None:
                fields[head.rstrip(':')] = rest.split()
    assert fields is not None, f'no mapping holds {addr:#x}'
    return fields


def _thp_mode():
    try:
        with open('/sys/kernel/mm/transparent_hugepage/enabled') as f:
            return f.read().split('[', 1)[1].split(']', 1)[0]
    except (OSError, IndexError):
        return 'never'


@pytest.mark.parametrize('kind', ['bytes', 'numpy'])
def test_large_received_objects_are_on_huge_pages(kind):
    # A received object of 32 MiB or more is a fresh mapping of glibc's; it is
    # advised to the kernel as huge pages before the message is copied in
    # (pyext/fastpath_alloc.c), else every 4 KiB of it faults on its own.
    import ctypes
    n = 64 * MiB
    obj = bytes(range(256)) * (n // 256) if kind == 'bytes' else np.arange(n // 8, dtype=np.int64)
    q = dragon_mp.Queue()
    q.put(obj)
    got = q.get(timeout=30)
    if kind == 'bytes':
        assert got == obj
        addr = ctypes.cast(ctypes.c_char_p(got), ctypes.c_void_p).value
    else:
        assert np.array_equal(got, obj)
        addr = got.ctypes.data
    vma = _mapping(addr + n // 2)
    assert 'hg' in vma['VmFlags'], vma['VmFlags']
    if _thp_mode() != 'never':
        assert int(vma['AnonHugePages'][0]) * 1024 >= n // 2, vma['AnonHugePages']
    del got

"""Queue, SimpleQueue and JoinableQueue: in one process and across processes.

Every behaviour test runs twice through the shared `mp` fixture (conftest.py):
against stdlib multiprocessing's 'spawn' context, the reference, and against
dragon_mp. Tests of deliberate differences (README) and of dragon_mp's
internals take no fixture and run on dragon_mp only. Targets of children are
module-level functions: spawned children import this module by name.
"""

import hashlib
import pickle
import queue
import time

import pytest

from conftest import submodule

JOIN = 30


def producer(q, start, count, size):
    for i in range(start, start + count):
        q.put((i, bytes([i % 251]) * size))


def consumer(q, out, count):
    total = 0
    for _ in range(count):
        i, payload = q.get(timeout=JOIN)
        total += i + len(payload)
    out.put(total)


def echo(inq, outq):
    while True:
        item = inq.get()
        if item is None:
            return
        outq.put(item)


def consume_and_mark_done(q, n):
    for _ in range(n):
        q.get(timeout=JOIN)
        time.sleep(0.01)
        q.task_done()


def test_fifo_in_one_process(mp):
    q = mp.Queue()
    for i in range(1000):
        q.put(i)
    assert q.qsize() == 1000
    assert [q.get() for _ in range(1000)] == list(range(1000))
    assert q.empty()


def test_get_timeout_raises_empty_and_queue_survives(mp):
    q = mp.Queue()
    start = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.2)
    assert time.monotonic() - start >= 0.19
    with pytest.raises(queue.Empty):
        q.get(block=False)
    with pytest.raises(queue.Empty):
        q.get_nowait()
    q.put('still works')
    assert q.get() == 'still works'


def test_bounded_queue_full(mp):
    q = mp.Queue(maxsize=2)
    q.put(1)
    q.put(2)
    assert q.full()
    with pytest.raises(queue.Full):
        q.put(3, block=False)
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.1)
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    assert q.get() == 1
    q.put(3)
    assert [q.get(), q.get()] == [2, 3]


def test_unbounded_queue_is_not_a_small_fixed_queue(mp):
    q = mp.Queue()
    for i in range(20_000):
        q.put_nowait(i)
    assert q.qsize() == 20_000
    assert sum(q.get() for _ in range(20_000)) == sum(range(20_000))


@pytest.mark.parametrize('size', [0, 1, 200, 4096, 1 << 20, 64 << 20])
def test_message_sizes(mp, size):
    q = mp.Queue()
    payload = bytes(range(256)) * (size // 256) + b'x' * (size % 256)
    q.put(payload)
    got = q.get(timeout=JOIN)
    assert len(got) == len(payload)
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()


# deliberate difference: stdlib's put succeeds and its feeder thread drops the object; ours raises.
def test_unpicklable_object_raises_like_pickle_and_queue_survives():
    import dragon_mp
    q = dragon_mp.Queue()
    with pytest.raises((pickle.PicklingError, AttributeError)) as info:
        q.put(lambda: 0)
    with pytest.raises(type(info.value)):
        pickle.dumps(lambda: 0)
    q.put('ok')
    assert q.get() == 'ok'
    assert q.empty()


def test_close_makes_this_handle_unusable(mp):
    q = mp.Queue()
    q.put(1)
    q.close()
    with pytest.raises(ValueError):
        q.put(2)
    with pytest.raises(ValueError):
        q.get()
    q.join_thread()



@pytest.mark.parametrize('kind', ['Queue', 'JoinableQueue'])
def test_empty_after_close(mp, kind):
    # A handle that put and closed is closed (empty() raises OSError, as
    # stdlib's closed pipe does); close() of a handle that never put changes
    # nothing. A closed SimpleQueue is closed whatever it did.
    q = getattr(mp, kind)()
    q.close()
    q.join_thread()
    assert q.empty()
    q = getattr(mp, kind)()
    q.put('x')
    q.close()
    q.join_thread()
    with pytest.raises(OSError, match='is closed'):
        q.empty()
    s = mp.SimpleQueue()
    s.close()
    s.close()
    with pytest.raises(OSError, match='is closed'):
        s.empty()

def test_many_producers_and_consumers_across_processes(mp):
    q, out = mp.Queue(), mp.Queue()
    n_prod, n_cons, per = 3, 2, 400
    total = n_prod * per
    prods = [mp.Process(target=producer, args=(q, k * per, per, 100)) for k in range(n_prod)]
    share = [total // n_cons + (1 if k < total % n_cons else 0) for k in range(n_cons)]
    cons = [mp.Process(target=consumer, args=(q, out, share[k])) for k in range(n_cons)]
    for p in prods + cons:
        p.start()
    results = [out.get(timeout=60) for _ in cons]
    for p in prods + cons:
        p.join(JOIN)
        assert p.exitcode == 0
    assert sum(results) == sum(range(total)) + 100 * total


def test_round_trip_through_a_child_keeps_order(mp):
    inq, outq = mp.Queue(), mp.Queue()
    p = mp.Process(target=echo, args=(inq, outq))
    p.start()
    items = [('x' * i, i) for i in range(300)] + [b'y' * (3 << 20)]
    for item in items:
        inq.put(item)
    assert [outq.get(timeout=JOIN) for _ in items] == items
    inq.put(None)
    p.join(JOIN)
    assert p.exitcode == 0


def test_simple_queue(mp):
    q = mp.SimpleQueue()
    assert q.empty()
    q.put({'a': 1})
    assert not q.empty()
    assert q.get() == {'a': 1}
    q.close()
    with pytest.raises(OSError):
        q.put(1)


# deliberate difference: stdlib queues pickle only while spawning a process (RuntimeError otherwise).
def test_queue_passed_through_a_queue():
    import dragon_mp
    outer, inner = dragon_mp.Queue(), dragon_mp.Queue()
    outer.put(inner)
    received = outer.get()
    received.put('through')
    assert inner.get(timeout=5) == 'through'


# dragon_mp internals: a forged channel address must give ValueError, not a crash.
def test_forged_address_is_an_error_not_a_crash():
    import dragon_mp
    from dragon_mp import queues
    dragon_mp.Queue()          # make sure the runtime is up
    for addr in (64, 12345, 1 << 40, (7 << 48) | 4096):
        forged = queues._Channel._attach(addr, 256)
        with pytest.raises(ValueError):
            forged.send(b'x')
        forged._finalizer.detach()


# dragon_mp internals: a panic in the Go core surfaces as a Python exception.
def test_go_panic_becomes_a_python_exception():
    import dragon_mp
    from dragon_mp import _core
    with pytest.raises(_core.GoError, match='internal error'):
        _core.call(_core.gocore().SelfTestPanic)
    q = dragon_mp.Queue()
    q.put('alive')
    assert q.get() == 'alive'


def test_blocking_put_waits_for_room_beyond_one_wait_slice(mp):
    q = mp.Queue(maxsize=1)
    q.put(1)
    start = time.monotonic()
    with pytest.raises(queue.Full):
        q.put(2, timeout=0.35)
    assert time.monotonic() - start >= 0.34


def test_queue_subclass_overrides_are_honoured(mp):
    base = submodule(mp, 'queues').Queue

    class Counting(base):
        puts = 0

        def put(self, obj, block=True, timeout=None):
            type(self).puts += 1
            super().put(obj, block, timeout)

    q = Counting(ctx=mp.get_context())        # stdlib's queues.Queue requires ctx
    q.put('a')
    assert Counting.puts == 1 and q.get(timeout=5) == 'a'
    assert isinstance(mp.Queue(), base)


def test_joinable_queue_join_waits_for_task_done(mp):
    q = mp.JoinableQueue()
    n = 5
    for i in range(n):
        q.put(i)
    p = mp.Process(target=consume_and_mark_done, args=(q, n))
    p.start()
    q.join()                 # returns only after the child marked all n done
    assert q.empty()
    p.join(JOIN)
    assert p.exitcode == 0
    with pytest.raises(ValueError):
        q.task_done()


def test_joinable_queue_full_does_not_count_a_task(mp):
    q = mp.JoinableQueue(maxsize=1)
    q.put('a')
    with pytest.raises(queue.Full):
        q.put('b', block=False)
    q.get()
    q.task_done()
    q.join()

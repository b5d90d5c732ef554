"""Connections are selectable: fileno() is readable while a message waits or
the peer is gone, so select, selectors, asyncio and stdlib's
multiprocessing.connection.wait work on dragon_mp connections; descriptors
pass over a dragon_mp Pipe with reduction.send_handle/recv_handle.

Behaviour tests run against stdlib ('spawn' context, the reference) and
dragon_mp. Targets are module level: spawned children import this module.
"""

import asyncio
import gc
import os
import select
import selectors
import tempfile
import threading
import time

import pytest

import multiprocessing
import multiprocessing.connection as std_connection
from multiprocessing import reduction as std_reduction

import dragon_mp
import dragon_mp.connection as dmp_connection
from dragon_mp import reduction as dmp_reduction

JOIN = 30


class Impl:
    def __init__(self, name, connection, ctx, reduction):
        self.name, self.connection, self.ctx, self.reduction = name, connection, ctx, reduction
        self.Pipe = connection.Pipe
        self.Process = ctx.Process


STD = Impl('stdlib-spawn', std_connection, multiprocessing.get_context('spawn'), std_reduction)
DMP = Impl('dragon_mp', dmp_connection, dragon_mp, dmp_reduction)


@pytest.fixture(params=[STD, DMP], ids=lambda impl: impl.name)
def mp(request):
    return request.param


def readable(fd, timeout):
    return select.select([fd], [], [], timeout)[0] == [fd]


def send_slowly(conn, n):
    for i in range(n):
        time.sleep(0.01)
        conn.send(i)
    conn.close()


def write_through_handle(conn):
    fd = _reduction_of(conn).recv_handle(conn)
    with os.fdopen(fd, 'w') as f:
        f.write('written by the child')
    conn.send('done')


def _reduction_of(conn):
    return dmp_reduction if isinstance(conn, dmp_connection.Connection) else std_reduction


def test_readable_while_a_message_waits(mp):
    a, b = mp.Pipe()
    fd = a.fileno()
    assert not readable(fd, 0.05)
    b.send('x')
    assert readable(fd, 5)
    assert readable(fd, 0)          # level-triggered: still there until received
    assert a.recv() == 'x'
    assert wait_not_readable(fd)
    b.send(1)
    b.send(2)
    assert readable(fd, 5)
    assert a.recv() == 1
    assert readable(fd, 0)          # the second one is still waiting
    assert a.recv() == 2
    assert wait_not_readable(fd)
    a.close()
    b.close()


def wait_not_readable(fd, within=2.0):
    # Not readable any more: looked at until it holds (dragon_mp clears the
    # signal in the recv; stdlib's socket is empty at once) and stays so.
    deadline = time.monotonic() + within
    while readable(fd, 0):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return not readable(fd, 0.05)


@pytest.mark.parametrize('how', ['recv_bytes', 'recv_bytes_into', 'recv_big'])
def test_every_kind_of_recv_clears_it(mp, how):
    a, b = mp.Pipe()
    fd = a.fileno()
    payload = b'y' * (4 << 20 if how == 'recv_big' else 100)
    t = threading.Thread(target=b.send_bytes, args=(payload,))
    t.start()
    assert readable(fd, 5)
    if how == 'recv_bytes_into':
        buf = bytearray(len(payload))
        assert a.recv_bytes_into(buf) == len(payload)
    else:
        assert a.recv_bytes() == payload
    t.join()
    assert wait_not_readable(fd)


def test_readable_at_eof(mp):
    a, b = mp.Pipe()
    fd = a.fileno()
    b.close()
    assert readable(fd, 5)
    with pytest.raises(EOFError):
        a.recv()
    assert readable(fd, 0)          # EOF stays readable, as a pipe's does


def test_stdlib_wait_selectors_and_a_child(mp):
    # stdlib's connection.wait over a dragon_mp or stdlib connection and a
    # stdlib pipe, with a child sending.
    a, b = mp.Pipe()
    other_r, other_w = multiprocessing.Pipe(duplex=False)
    p = mp.Process(target=send_slowly, args=(b, 5))
    p.start()
    b.close()
    got = []
    while len(got) < 5:
        ready = std_connection.wait([a, other_r], timeout=JOIN)
        assert ready == [a]
        got.append(a.recv())
    assert got == [0, 1, 2, 3, 4]
    assert std_connection.wait([a], timeout=JOIN) == [a]      # EOF once the child is gone
    with pytest.raises(EOFError):
        a.recv()
    p.join(JOIN)
    assert p.exitcode == 0
    other_r.close()
    other_w.close()


def test_selectors_many_connections(mp):
    pairs = [mp.Pipe() for _ in range(8)]
    sel = selectors.DefaultSelector()
    for i, (a, _) in enumerate(pairs):
        sel.register(a, selectors.EVENT_READ, i)
    for i in (1, 5, 6):
        pairs[i][1].send(i)
    seen = set()
    deadline = time.monotonic() + 5
    while len(seen) < 3 and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):
            seen.add(key.fileobj.recv())
    assert seen == {1, 5, 6}
    sel.close()
    for a, b in pairs:
        a.close()
        b.close()


def test_asyncio_add_reader(mp):
    a, b = mp.Pipe()

    async def main():
        loop = asyncio.get_running_loop()
        got = loop.create_future()
        loop.add_reader(a.fileno(), lambda: got.done() or got.set_result(a.recv()))
        loop.call_later(0.05, b.send, 'hello')
        try:
            return await asyncio.wait_for(got, JOIN)
        finally:
            loop.remove_reader(a.fileno())

    assert asyncio.run(main()) == 'hello'
    a.close()
    b.close()


def test_send_handle_to_a_child(mp):
    a, b = mp.Pipe()
    p = mp.Process(target=write_through_handle, args=(b,))
    p.start()
    with tempfile.NamedTemporaryFile('w+') as f:
        mp.reduction.send_handle(a, f.fileno(), p.pid)
        assert a.recv() == 'done'
        f.seek(0)
        assert f.read() == 'written by the child'
    p.join(JOIN)
    assert p.exitcode == 0


# --- dragon_mp only ----------------------------------------------------------------------------

def _open_fds():
    """The open descriptors as (number, what it is): a set that other code
    (a collected object of an earlier test) closing its own cannot grow."""
    fds = set()
    for name in os.listdir('/proc/self/fd'):
        try:
            fds.add((int(name), os.readlink(f'/proc/self/fd/{name}')))
        except OSError:         # listdir's own descriptor, closed since
            pass
    return fds


def _new_fds(before):
    return _open_fds() - before


def _threads_named(name):
    return [t for t in threading.enumerate() if t.name == name]


def test_nothing_until_fileno_and_nothing_left_after():
    # A connection nobody selects on has no descriptor and no thread; one
    # that was selected on gives both back when closed or collected.
    name = 'dragon_mp Connection.fileno'
    warm_a, warm_b = dmp_connection.Pipe()     # the runtime's own descriptors, opened once
    warm_a.send(0)
    assert warm_b.recv() == 0
    fds, threads = _open_fds(), len(_threads_named(name))
    a, b = dmp_connection.Pipe()
    a.send(1)
    assert b.recv() == 1
    assert not _new_fds(fds) and len(_threads_named(name)) == threads
    b.fileno()
    a.fileno()
    assert _new_fds(fds) and len(_threads_named(name)) == threads + 2
    b.close()
    with pytest.raises(OSError):
        b.fileno()
    # a is signalled (its peer is gone) and nobody will recv: collecting it
    # must still end its thread.
    assert readable(a.fileno(), 5)
    del a
    gc.collect()
    deadline = time.monotonic() + 5
    while (_new_fds(fds) or len(_threads_named(name)) != threads) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _new_fds(fds) and len(_threads_named(name)) == threads


def test_recv_in_another_thread_leaves_no_false_signal():
    # Receivers in other threads race the watcher: after they are done, the
    # descriptor is not readable with nothing waiting.
    a, b = dmp_connection.Pipe()
    fd = a.fileno()
    got = []
    t = threading.Thread(target=lambda: [got.append(a.recv()) for _ in range(200)])
    t.start()
    for i in range(200):
        b.send(i)
    t.join(JOIN)
    assert got == list(range(200))
    assert wait_not_readable(fd)
    a.close()
    b.close()


def _take_under_lock(conn, lock, taken, results):
    # pebble's worker: wait until readable, then under the shared lock look
    # again with a zero timeout and recv only if readable. Each time the
    # descriptor says readable under the lock with nothing to receive, a
    # blocking recv would hang holding the lock.
    fd = conn.fileno()
    got, false_ready = [], 0
    while True:
        if not readable(fd, JOIN):
            break
        with lock:
            if not readable(fd, 0):
                continue
            if not conn.poll(0):
                false_ready += 1
                continue
            item = conn.recv()
        if item is None:
            break
        got.append(item)
        taken.put(item)
    results.put((got, false_ready))


def test_readable_under_a_shared_lock_means_a_message_waits(mp):
    # Three processes read one end (pebble's task pipe) and the writer sends
    # the next message once the last one is taken, so every message wakes
    # every reader's watcher from an empty pipe: they race each other's recv.
    # A byte written for a message another process has just taken must be
    # gone before that recv returns.
    n, readers = 1500, 3
    r, w = mp.Pipe(duplex=False)
    lock, taken, results = mp.ctx.Lock(), mp.ctx.Queue(), mp.ctx.Queue()
    procs = [mp.Process(target=_take_under_lock, args=(r, lock, taken, results))
             for _ in range(readers)]
    for p in procs:
        p.start()
    for i in range(n):
        w.send(i)
        assert taken.get(timeout=JOIN) == i
    for _ in range(readers):
        w.send(None)
    outs = [results.get(timeout=JOIN) for _ in procs]
    for p in procs:
        p.join(JOIN)
        assert p.exitcode == 0
    assert sorted(x for got, _ in outs for x in got) == list(range(n))
    assert sum(f for _, f in outs) == 0

"""dragon_mp.connection: Pipe on shared-memory channels, wait, Listener/Client.

Every behaviour test runs twice: against stdlib multiprocessing ('spawn'
context, the reference) and against dragon_mp, so each assertion checks that
dragon_mp does what stdlib does. Targets are module level: spawned children
import this module by name.
"""

import array
import os
import pickle
import signal
import socket
import threading
import time

import pytest

import multiprocessing
import multiprocessing.connection as std_connection
from multiprocessing.context import AuthenticationError, BufferTooShort

import dragon_mp
import dragon_mp.connection as dmp_connection

JOIN = 30
BIG = 8 << 20


class Impl:
    def __init__(self, name, connection, ctx):
        self.name = name
        self.connection = connection        # the connection module
        self.ctx = ctx                      # Process, Queue, ...
        self.Pipe = connection.Pipe
        self.wait = connection.wait
        self.Process = ctx.Process


STD = Impl('stdlib-spawn', std_connection, multiprocessing.get_context('spawn'))
DMP = Impl('dragon_mp', dmp_connection, dragon_mp)


@pytest.fixture(params=[STD, DMP], ids=lambda impl: impl.name)
def mp(request):
    return request.param


def sending(conn, *messages):
    """Send byte strings from a thread: a stdlib pipe holds only a socket buffer's worth."""
    t = threading.Thread(target=lambda: [conn.send_bytes(m) for m in messages])
    t.start()
    return t


def start(mp, target, *args):
    p = mp.Process(target=target, args=args)
    p.start()
    return p


def finish(p, code=0):
    p.join(JOIN)
    assert p.exitcode == code, (p, p.exitcode)


# --- targets --------------------------------------------------------------------------------

def echo(conn):
    """Send back every message until EOF (objects and byte strings alike)."""
    try:
        while True:
            conn.send_bytes(conn.recv_bytes())
    except EOFError:
        pass
    conn.close()


def send_items(conn, items, close):
    for item in items:
        conn.send(item)
    if close:
        conn.close()
    # else: left open, closed by the process's exit


def send_then_sleep(conn, seconds):
    conn.send('hello')
    time.sleep(seconds)


def send_after(conn, delay, obj):
    time.sleep(delay)
    conn.send(obj)


def sleep_for(seconds):
    time.sleep(seconds)


def conn_from_queue(q):
    conn = q.get(timeout=JOIN)
    conn.send(('got', conn.readable, conn.writable))
    conn.close()


def client(address, authkey, message):
    try:
        with dmp_connection.Client(address, authkey=authkey) as c:
            c.send(message)
            assert c.recv() == ('ack', message)
    except AuthenticationError:
        os._exit(7)


def recv_and_report(conn, result):
    try:
        result.put(('ok', conn.recv()))
    except EOFError:
        result.put(('eof', None))


# --- one process ------------------------------------------------------------------------------

def test_duplex_in_process(mp):
    a, b = mp.Pipe()
    assert (a.readable, a.writable, b.readable, b.writable) == (True, True, True, True)
    assert not a.closed
    for obj in [None, 1, 'text', [1, (2, 3)], {'k': b'v' * 1000}, b'x' * 300]:
        a.send(obj)
        assert b.recv() == obj
        b.send(obj)
        assert a.recv() == obj
    a.close()
    b.close()


def test_one_way_in_process(mp):
    r, w = mp.Pipe(duplex=False)
    assert (r.readable, r.writable) == (True, False)
    assert (w.readable, w.writable) == (False, True)
    w.send([1, 2])
    assert r.recv() == [1, 2]
    with pytest.raises(OSError, match='connection is read-only'):
        r.send(1)
    with pytest.raises(OSError, match='connection is read-only'):
        r.send_bytes(b'x')
    with pytest.raises(OSError, match='connection is write-only'):
        w.recv()
    with pytest.raises(OSError, match='connection is write-only'):
        w.recv_bytes()
    with pytest.raises(OSError, match='connection is write-only'):
        w.poll()
    with r, w:
        pass
    assert r.closed and w.closed


def test_fifo_order(mp):
    a, b = mp.Pipe()
    for i in range(200):                    # stays within a socket buffer
        a.send(i)
    assert [b.recv() for _ in range(200)] == list(range(200))


def test_send_bytes_offset_size(mp):
    a, b = mp.Pipe()
    data = b'0123456789'
    a.send_bytes(data)
    a.send_bytes(data, 3)
    a.send_bytes(data, 3, 4)
    a.send_bytes(data, 10)
    a.send_bytes(bytearray(data), 2, 0)
    a.send_bytes(memoryview(data)[1:], 1, 2)
    assert [b.recv_bytes() for _ in range(6)] == [data, b'3456789', b'3456', b'', b'', b'23']
    arr = array.array('i', range(10))              # itemsize 4: offset/size count bytes
    a.send_bytes(arr, 4, 8)
    assert b.recv_bytes() == arr.tobytes()[4:12]
    for offset, size, message in [(-1, None, 'offset is negative'),
                                  (11, None, 'buffer length < offset'),
                                  (0, -1, 'size is negative'),
                                  (5, 6, r'buffer length < offset \+ size')]:
        with pytest.raises(ValueError, match=message):
            a.send_bytes(data, offset, size)
    assert not b.poll()


def test_recv_bytes_maxlength(mp):
    a, b = mp.Pipe()
    with pytest.raises(ValueError, match='negative maxlength'):
        b.recv_bytes(-1)
    a.send_bytes(b'x' * 10)
    assert b.recv_bytes(10) == b'x' * 10
    a.send_bytes(b'x' * 100)
    with pytest.raises(OSError, match='bad message length'):
        b.recv_bytes(10)
    # A duplex connection stays open but can no longer read.
    assert not b.closed and not b.readable and b.writable
    with pytest.raises(OSError, match='connection is write-only'):
        b.recv_bytes()
    # A one-way reader is closed.
    r, w = mp.Pipe(False)
    w.send_bytes(b'y' * 100)
    with pytest.raises(OSError, match='bad message length'):
        r.recv_bytes(99)
    assert r.closed


def test_recv_bytes_into(mp):
    a, b = mp.Pipe()
    buf = bytearray(20)
    a.send_bytes(b'abc')
    assert b.recv_bytes_into(buf) == 3
    a.send_bytes(b'defg')
    assert b.recv_bytes_into(buf, 5) == 4
    assert buf == b'abc\0\0defg' + bytes(11)
    a.send_bytes(b'')
    assert b.recv_bytes_into(buf, 20) == 0
    a.send_bytes(b'x' * 16)
    with pytest.raises(BufferTooShort) as info:
        b.recv_bytes_into(buf, 5)
    assert info.value.args[0] == b'x' * 16
    assert isinstance(info.value, multiprocessing.BufferTooShort)
    with pytest.raises(ValueError, match='negative offset'):
        b.recv_bytes_into(buf, -1)
    with pytest.raises(ValueError, match='offset too large'):
        b.recv_bytes_into(buf, 21)
    # A typed buffer: its size is counted in bytes.
    arr = array.array('i', [0] * 4)
    a.send_bytes(array.array('i', [7, 8]))
    assert b.recv_bytes_into(arr, 8) == 8
    assert arr.tolist() == [0, 0, 7, 8]
    # Big messages too.
    big = bytes(range(256)) * (BIG // 256)
    t = sending(a, big, big)
    target = bytearray(BIG + 10)
    assert b.recv_bytes_into(target, 10) == BIG
    assert target[10:] == big
    with pytest.raises(BufferTooShort) as info:
        b.recv_bytes_into(bytearray(BIG - 1))
    assert info.value.args[0] == big
    t.join(JOIN)
    assert not b.poll()


def test_poll_timeouts(mp):
    a, b = mp.Pipe()
    assert b.poll() is False
    assert b.poll(0) is False
    assert b.poll(-1) is False
    t = time.monotonic()
    assert b.poll(0.2) is False
    assert 0.18 <= time.monotonic() - t < 5
    a.send(1)
    assert b.poll() is True
    assert b.poll(None) is True
    assert b.poll(1) is True
    assert b.recv() == 1
    threading.Timer(0.2, a.send, (2,)).start()
    t = time.monotonic()
    assert b.poll(None) is True
    assert time.monotonic() - t < 5
    assert b.recv() == 2


def test_zero_length_and_large_in_process(mp):
    a, b = mp.Pipe()
    a.send_bytes(b'')
    assert b.poll()
    assert b.recv_bytes() == b''
    big = os.urandom(BIG)
    t = sending(a, big, pickle.dumps(big, 4))
    assert b.recv_bytes() == big
    assert b.recv() == big
    t.join(JOIN)


def test_unpicklable(mp):
    a, b = mp.Pipe()
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        a.send(lambda: 1)
    with pytest.raises(TypeError):
        a.send(threading.Lock())
    assert not b.poll()                     # nothing half-sent
    a.send('fine')
    assert b.recv() == 'fine'


def test_closed_handle(mp):
    a, b = mp.Pipe()
    a.close()
    a.close()                               # twice is fine
    assert a.closed
    for call in (lambda: a.send(1), lambda: a.recv(), lambda: a.send_bytes(b'x'),
                 lambda: a.recv_bytes(), lambda: a.recv_bytes_into(bytearray(1)),
                 lambda: a.poll(), lambda: a.fileno(), lambda: mp.wait([a], 0)):
        with pytest.raises(OSError, match='handle is closed'):
            call()


@pytest.mark.parametrize('duplex', [True, False])
def test_eof_after_peer_closed(mp, duplex):
    r, w = mp.Pipe(duplex)
    w.send('last')
    w.send_bytes(b'')
    w.close()
    assert r.poll() is True
    assert r.recv() == 'last'
    assert r.recv_bytes() == b''
    assert r.poll() is True                 # at EOF: readable, as a pipe is
    assert r.poll(None) is True
    assert mp.wait([r], 10) == [r]
    for _ in range(2):
        with pytest.raises(EOFError):
            r.recv()
    with pytest.raises(EOFError):
        r.recv_bytes()
    with pytest.raises(EOFError):
        r.recv_bytes_into(bytearray(10))


@pytest.mark.parametrize('duplex', [True, False])
def test_broken_pipe(mp, duplex):
    r, w = mp.Pipe(duplex)
    r.close()
    with pytest.raises(BrokenPipeError):
        w.send(1)
    with pytest.raises(BrokenPipeError):
        w.send_bytes(b'x' * BIG)
    if duplex:
        with pytest.raises(EOFError):
            w.recv()


def test_write_end_waits_for_reader_to_go(mp):
    r, w = mp.Pipe(False)
    w.send('queued')
    assert mp.wait([w], 0.05) == []        # a write end is not "readable"
    r.close()
    assert mp.wait([w], 10) == [w]         # ... until its reader is gone


def test_pickle_closed_connection(mp):
    a, b = mp.Pipe()
    a.close()
    with pytest.raises(OSError, match='handle is closed'):
        multiprocessing.reduction.ForkingPickler.dumps(a)


def test_threads(mp):
    a, b = mp.Pipe()
    got = []
    t = threading.Thread(target=lambda: got.extend(b.recv() for _ in range(100)))
    t.start()
    for i in range(100):
        a.send(i)
    t.join(JOIN)
    assert got == list(range(100))


def test_garbage_collected_end_closes(mp):
    import gc
    a, b = mp.Pipe()
    b.send('before')
    del b
    gc.collect()
    assert a.recv() == 'before'
    with pytest.raises(EOFError):
        a.recv()


@pytest.mark.parametrize('what', ['recv', 'poll', 'wait'])
def test_ctrl_c_interrupts_blocking_calls(mp, what):
    a, b = mp.Pipe()
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    t = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        if what == 'recv':
            b.recv()
        elif what == 'poll':
            b.poll(None)
        else:
            mp.wait([b, a], None)
    assert time.monotonic() - t < 5
    timer.join()


# --- with child processes ----------------------------------------------------------------------

def test_duplex_with_child(mp):
    a, b = mp.Pipe()
    p = start(mp, echo, b)
    b.close()
    big = os.urandom(BIG)
    for msg in [b'', b'small', b'm' * 5000, big]:
        a.send_bytes(msg)
        assert a.recv_bytes() == msg
    a.send({'obj': [1, 2]})
    assert a.recv() == {'obj': [1, 2]}
    a.close()                               # the child sees EOF and ends
    finish(p)


@pytest.mark.parametrize('close', [True, False])
def test_one_way_with_child_then_eof(mp, close):
    r, w = mp.Pipe(False)
    items = list(range(50)) + [b'z' * BIG]
    p = start(mp, send_items, w, items, close)
    w.close()                               # the child's copy stays open
    assert [r.recv() for _ in items] == items
    with pytest.raises(EOFError):
        r.recv()                            # after the child closed or exited
    finish(p)


def test_connection_survives_parent_copy_close(mp):
    # Closing the parent's handle must not close the child's.
    a, b = mp.Pipe()
    p = start(mp, echo, b)
    b.close()
    time.sleep(0.2)
    a.send_bytes(b'still there')
    assert a.recv_bytes() == b'still there'
    a.close()
    finish(p)


def test_eof_when_peer_killed(mp):
    r, w = mp.Pipe(False)
    p = start(mp, send_then_sleep, w, 60)
    w.close()
    assert r.recv() == 'hello'
    os.kill(p.pid, signal.SIGKILL)
    t = time.monotonic()
    assert r.poll(JOIN)
    with pytest.raises(EOFError):
        r.recv()
    assert time.monotonic() - t < 5
    finish(p, -signal.SIGKILL)


def test_blocked_recv_sees_killed_peer(mp):
    a, b = mp.Pipe()
    p = start(mp, send_then_sleep, b, 60)
    b.close()
    assert a.recv() == 'hello'
    threading.Timer(0.3, os.kill, (p.pid, signal.SIGKILL)).start()
    with pytest.raises(EOFError):
        a.recv()                            # blocked when the peer died
    with pytest.raises(BrokenPipeError):
        a.send('nobody there')
    finish(p, -signal.SIGKILL)


def test_send_to_killed_peer(mp):
    a, b = mp.Pipe()
    p = start(mp, send_then_sleep, b, 60)
    b.close()
    assert a.recv() == 'hello'
    p.kill()
    finish(p, -signal.SIGKILL)
    t = time.monotonic()
    with pytest.raises(BrokenPipeError):
        # stdlib fails at once; dragon_mp once it looked at the peer (~50 ms)
        while time.monotonic() - t < 5:
            a.send_bytes(b'x' * 1000)
    assert time.monotonic() - t < 5


def test_connection_through_queue(mp):
    q = mp.ctx.Queue()
    r, w = mp.Pipe(False)
    p = start(mp, conn_from_queue, q)
    q.put(w)
    assert r.recv() == ('got', False, True)
    w.close()                               # (stdlib's Queue pickles w in a thread, later)
    with pytest.raises(EOFError):
        r.recv()
    finish(p)


def test_many_writers(mp):
    r, w = mp.Pipe(False)
    procs = [start(mp, send_items, w, [(i, k) for k in range(100)], True) for i in range(3)]
    w.close()
    got = []
    while True:
        try:
            got.append(r.recv())
        except EOFError:
            break
    assert sorted(got) == sorted((i, k) for i in range(3) for k in range(100))
    for p in procs:
        finish(p)


# --- wait -----------------------------------------------------------------------------------

def test_wait_timeouts(mp):
    a, b = mp.Pipe()
    s1, s2 = socket.socketpair()
    with s1, s2:
        assert mp.wait([a, b, s1], 0) == []
        assert mp.wait([a, b, s1], -1) == []
        t = time.monotonic()
        assert mp.wait([a, b, s1], 0.2) == []
        assert 0.18 <= time.monotonic() - t < 5
        assert mp.wait([], 0.05) == []


def test_wait_mix(mp):
    a, b = mp.Pipe()
    r, w = mp.Pipe(False)
    s1, s2 = socket.socketpair()
    p = start(mp, sleep_for, 60)
    q = start(mp, send_after, b, 0.3, 'late')
    objects = [a, r, p.sentinel, s1]
    with s1, s2:
        assert mp.wait(objects, 0.05) == []
        # A connection whose message arrives later.
        ready = mp.wait(objects, JOIN)
        assert ready == [a], ready
        assert a.recv() == 'late'
        # The process sentinel (an int fd).
        p.terminate()
        ready = mp.wait([a, r, p.sentinel, s1], JOIN)
        assert ready == [p.sentinel], ready
        objects.remove(p.sentinel)
        # A socket and a one-way pipe, both ready: both reported.
        s2.send(b'x')
        w.send('y')
        t = time.monotonic()
        while set(mp.wait(objects, JOIN)) != {s1, r}:
            assert time.monotonic() - t < JOIN
        assert s1.recv(1) == b'x' and r.recv() == 'y'
        assert mp.wait(objects, 0.05) == []
        # A file object with fileno(), and an invalid object.
        rf, wf = os.pipe()
        with open(rf, 'rb') as f, open(wf, 'wb') as g:
            g.write(b'z')
            g.flush()
            assert mp.wait([a, f], JOIN) == [f]
        with pytest.raises(ValueError):
            mp.wait([object()], 0)
        with pytest.raises(ValueError):
            mp.wait([-1], 0)
    finish(p, -signal.SIGTERM)
    finish(q)


def test_wait_multiplexes_children(mp):
    pairs = [mp.Pipe() for _ in range(4)]
    procs = [start(mp, echo, b) for _, b in pairs]
    conns = [a for a, _ in pairs]
    for _, b in pairs:
        b.close()
    sent = {c: 0 for c in conns}
    received = {c: 0 for c in conns}
    for c in conns:
        c.send(0)
        sent[c] = 1
    t = time.monotonic()
    while sum(received.values()) < 50 * len(conns):
        assert time.monotonic() - t < JOIN
        for c in mp.wait(conns, JOIN):
            assert c.recv() == received[c]
            received[c] += 1
            if sent[c] < 50:
                c.send(sent[c])
                sent[c] += 1
    for c in conns:
        c.close()
    for p in procs:
        finish(p)


def test_wait_eof_and_killed_peer(mp):
    a, b = mp.Pipe()
    p = start(mp, send_then_sleep, b, 60)
    b.close()
    assert a.recv() == 'hello'
    s1, s2 = socket.socketpair()
    with s1, s2:
        threading.Timer(0.3, os.kill, (p.pid, signal.SIGKILL)).start()
        got = set()
        t = time.monotonic()
        while got != {a, p.sentinel}:       # the sentinel may come first
            got.update(mp.wait([a, p.sentinel, s1], JOIN))
            assert time.monotonic() - t < JOIN
        with pytest.raises(EOFError):
            a.recv()
    finish(p, -signal.SIGKILL)


# --- Listener / Client --------------------------------------------------------------------------

@pytest.mark.parametrize('family', ['AF_UNIX', 'AF_INET'])
def test_listener_client(mp, family):
    with mp.connection.Listener(family=family, authkey=b'secret') as listener:
        p = start(mp, client, listener.address, b'secret', 'hi')
        with listener.accept() as conn:
            a, b = mp.Pipe()
            # A socket connection and a pipe in one wait.
            assert conn in mp.wait([a, conn], JOIN)
            assert conn.recv() == 'hi'
            conn.send(('ack', 'hi'))
            b.send('pipe')
            assert a in mp.wait([a, conn], JOIN)    # (conn too once the client is gone)
            assert a.recv() == 'pipe'
        finish(p)


def test_listener_wrong_authkey(mp):
    with mp.connection.Listener(authkey=b'secret') as listener:
        p = start(mp, client, listener.address, b'wrong', 'hi')
        with pytest.raises(AuthenticationError):
            listener.accept()
        finish(p, 7)


def test_module_api(mp):
    c = mp.connection
    assert c.__all__ == ['Client', 'Listener', 'Pipe', 'wait']
    assert c.BufferTooShort is multiprocessing.BufferTooShort
    assert c.AuthenticationError is multiprocessing.AuthenticationError
    assert c.families == std_connection.families
    assert c.default_family == std_connection.default_family
    assert c.arbitrary_address('AF_INET') == ('localhost', 0)
    for name in ('deliver_challenge', 'answer_challenge', 'SocketListener', 'SocketClient'):
        assert getattr(c, name) is getattr(std_connection, name)


# --- dragon_mp only ----------------------------------------------------------------------------

def test_connection_constructor_with_fd():
    r, w = os.pipe()
    c = dmp_connection.Connection(r, writable=False)
    assert isinstance(c, std_connection.Connection)
    c.close()
    os.close(w)


def test_large_messages_return_to_pool():
    import json
    gc = dragon_mp._core.gocore()
    a, b = dmp_connection.Pipe()
    a.send_bytes(b'x' * BIG)        # the first large message makes this process's
    b.recv_bytes()                  # ledger (gocore/ledger), a 4 KiB block of its own
    base = json.loads(gc.RuntimeStats())['in_use']
    for _ in range(5):
        a.send_bytes(b'x' * BIG)
        assert len(b.recv_bytes()) == BIG
        a.send(b'y' * BIG)
        assert len(b.recv()) == BIG
        a.send_bytes(b'x' * BIG)
        b.recv_bytes_into(bytearray(BIG))
        a.send_bytes(b'x' * BIG)
        with pytest.raises(OSError):
            b.recv_bytes(1)
        b.close()
        a, b = dmp_connection.Pipe()
    assert json.loads(gc.RuntimeStats())['in_use'] == base


def test_pipe_memory_freed():
    import gc
    import json
    stats = dragon_mp._core.gocore().RuntimeStats
    dmp_connection.Pipe()                  # first use: runtime up
    gc.collect()
    base = json.loads(stats())['in_use']
    for duplex in (True, False):
        a, b = dmp_connection.Pipe(duplex)
        b.close()
        del a, b
    gc.collect()
    assert json.loads(stats())['in_use'] == base


def send_and_exit(conn, how):
    conn.send('bye')
    if how == 'os._exit':
        os._exit(0)


def _pipe_closed(conn):
    """Whether conn's pipe was closed, looked at without the dead-peer check."""
    import ctypes
    dmp_wait = dmp_connection._wait_fn()
    addr, mode = conn._wait_target()
    ready = (ctypes.c_uint8 * 1)()
    return dmp_wait((ctypes.c_uint64 * 1)(addr), (ctypes.c_uint8 * 1)(mode), 1,
                    None, 0, 0, ready) == 1 and not conn._rch.__len__()


@pytest.mark.parametrize('how', ['return', 'os._exit'])
def test_exit_drops_handles(how):
    r, w = dmp_connection.Pipe(False)
    p = start(DMP, send_and_exit, w, how)
    w.close()
    p.join(JOIN)
    assert r.recv() == 'bye'
    # A normal exit drops the child's handles (util.Finalize); os._exit does
    # not, and the reader finds out that the holder is dead.
    assert _pipe_closed(r) == (how == 'return')
    t = time.monotonic()
    with pytest.raises(EOFError):
        r.recv()
    assert time.monotonic() - t < 2
    assert _pipe_closed(r)

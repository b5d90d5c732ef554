"""multiprocessing.connection with Pipe on shared-memory channels.

`Pipe()` returns two `Connection` objects over dragon_mp channels (a duplex
pipe has one channel per direction, a one-way pipe one channel). A message
is copied once into the run's pool by send and once out of it by recv (large
messages live in their own pool block and are read in place); no file
descriptor, no kernel buffer, no message-size limit but the pool's.

Everything else (Listener, Client, the authentication handshake, the socket
classes) is stdlib's: those connections are sockets and work between
dragon_mp processes as they do between stdlib ones. `wait` accepts both
kinds, and anything with a fileno() (process sentinels, sockets), in one
list.

End of a pipe, EOF and broken pipes
-----------------------------------
As with a file descriptor, every open Connection object is a *handle* on its
end of the pipe: pickling one (to pass it to a child, or through a Queue)
makes a new handle for the receiver, close() or garbage collection drops
one, and a process's remaining handles are dropped when it exits normally
(they are registered with multiprocessing.util.Finalize, which the exit of
every process runs). The handles of each end are counted in shared memory.
When an end loses its last handle, the pipe is closed: the peer receives
what is still queued, then recv raises EOFError (and poll reports True, as
for a real pipe at EOF); its send raises BrokenPipeError.

A process that dies without running its exit handlers (SIGKILL, a crash,
os._exit) cannot drop its handles. The counts record which processes hold
handles (pid and start time); a blocked recv, poll or wait looks after every
empty 100 ms slice (and any call at most every 50 ms, send included) whether
every holder of the other end is dead; if so the pipe counts as closed,
exactly as if the dead processes had closed their handles: EOF within about
100 ms for a waiting reader, BrokenPipeError for a writer. The blind spots:
a handle pickled but never unpickled (a pickle thrown away, a child that
dies before loading its arguments) counts as open for good, so its end
never reaches EOF; and an end held by more than 12 processes at once is no
longer watched for dead holders.

fileno()
--------
A channel has no file descriptor of its own. fileno() makes one on first use
(_Readiness): a pipe that a thread of this process keeps readable while a
message waits or the peer is gone, so select, selectors, asyncio and stdlib's
multiprocessing.connection.wait watch dragon_mp connections too. Until
someone calls fileno() nothing of this exists. `wait` here needs none of it:
it sleeps on the channels' futex words and poll(2)s the descriptors at once.
"""

import ctypes
import errno
import fcntl
import os
import select
import threading
import time
import weakref

from multiprocessing import connection as _stdlib
from multiprocessing import util
from multiprocessing.context import AuthenticationError, BufferTooShort  # noqa: F401

from . import _core, _fast, _runtime
from ._shared import SharedObject, WAIT_SLICE_NS
from .queues import _Channel
from .reduction import ForkingPickler

__all__ = ['Client', 'Listener', 'Pipe', 'wait']

# stdlib's socket-based half, unchanged.
from multiprocessing.connection import (      # noqa: E402,F401
    BUFSIZE, CONNECTION_TIMEOUT, Client, Listener, SocketClient, SocketListener,
    address_type, answer_challenge, arbitrary_address, default_family,
    deliver_challenge, families, rebuild_connection, reduce_connection)
for _name in ('XmlListener', 'XmlClient', 'MESSAGE_LENGTH', 'CHALLENGE',
              'WELCOME', 'FAILURE'):
    if hasattr(_stdlib, _name):
        globals()[_name] = getattr(_stdlib, _name)
del _name

_TIMED_OUT = -_core.TIMEOUT
_CLOSED = -_core.CLOSED

# PipeHandle operations (pyext/conn.go).
_OP_PICKLE, _OP_ADOPT, _OP_CLOSE = 1, 2, 3
# dmp_wait modes: wait for a message (or EOF), or only for the pipe to close.
_MODE_MESSAGE, _MODE_CLOSE = 0, 1
# Least time between two looks at whether the peer's processes still live.
# A look at a pipe of another node is a round trip that waits behind this
# process's posted sends (gocore/agent: requests are ordered after posts), so
# a stream of sends would stall at every look: there, once a second (a sender
# on another node learns of a dead reader within ~1 s; measured, 1 MiB
# send_bytes: 1.28-1.46 GB/s looking every 0.05 s, 1.58-1.66 GB/s every 1 s).
_PEER_CHECK_INTERVAL = 0.05
_PEER_CHECK_INTERVAL_REMOTE = 1.0

_dmp_wait = None


def _wait_fn():
    """dmp_wait(addrs, modes, n, fds, nfds, timeout_ns, ready) (pyext/conn.go),
    bound by the C extension; the GIL is released while it waits.

    The arrays are ctypes arrays (c_uint64 addresses, c_uint8 modes, c_int32
    descriptors, c_uint8 ready flags; fds may be None): plain memory, passed
    to Go by address. Callers slice the wait themselves (timeout_ns).
    """
    global _dmp_wait
    _core.fast()                        # loads the library; refuses in a forked child
    if _dmp_wait is None:
        fn = _fast.bound('dmp_wait', 'uuuuuiu', nogil=True)
        at = ctypes.addressof

        def dmp_wait(addrs, modes, n, fds, nfds, timeout_ns, ready):
            return fn(at(addrs), at(modes), n, 0 if fds is None else at(fds), nfds, timeout_ns, at(ready))
        _dmp_wait = dmp_wait
    return _dmp_wait


class _PipeState(SharedObject):
    """The shared record of a pipe's open handles (pyext/conn.go)."""

    _retain_fn = 'SyncRetain'
    _drop_fn = 'SyncRelease'

    def __init__(self, ch0, ch1):
        self._adopt(_core.call(_core.gocore().PipeCreate, ch0._addr,
                               ch1._addr if ch1 is not None else 0))

    def handle(self, end, op):
        return _core.call(_core.gocore().PipeHandle, self._addr, end, op)

    def peer_gone(self, end):
        return _core.call(_core.gocore().PipePeerGone, self._addr, end)


def _close_handle(state, end, gen, *channels):
    # Runs once per handle: close(), garbage collection, or process exit.
    # After the run ended (or its memory references were dropped at
    # interpreter exit) there is nothing left to count.
    if not _runtime.alive(gen) or not state._finalizer.alive:
        return
    try:
        state.handle(end, _OP_CLOSE)
    except Exception:
        pass


def _register_finalizer(conn):
    """Drop conn's handle when it dies, or when the process exits (after its
    children were joined, as a process's file descriptors close last)."""
    if conn._handle is None:
        return
    # (The channels ride along so that their memory outlives the handle.)
    conn._finalizer = util.Finalize(
        conn, _close_handle, (conn._state, conn._end, conn._gen, conn._rch, conn._wch),
        exitpriority=-10)


def _release(data):
    """Free a message _recv_fast(whole=True) returned (bytes: nothing to free)."""
    if data.__class__ is not bytes:
        data.release()


class Connection(_stdlib.Connection):
    """One end of a Pipe: the API of multiprocessing.connection.Connection.

    Connection(fd, readable=True, writable=True) with a file descriptor
    makes a stdlib Connection, as multiprocessing.connection.Connection
    does; dragon_mp connections come from Pipe(). A subclass of stdlib's
    class so that code checking the type accepts it; every method stdlib's
    code would run is defined here (its file-descriptor helpers are not
    reachable from these).
    """

    _handle = None

    def __new__(cls, *args, **kwargs):
        return _stdlib.Connection(*args, **kwargs)

    def __del__(self):
        # stdlib's would os.close(self._handle); the handle here is a pipe's
        # address, dropped by the finalizer registered in _make.
        pass

    @classmethod
    def _make(cls, state, end, rch, wch, readable, writable):
        self = super().__new__(cls)
        self._state, self._end = state, end
        self._rch, self._wch = rch, wch
        self._readable, self._writable = readable, writable
        self._gen = _runtime.generation()
        self._peer_check_every = (_PEER_CHECK_INTERVAL_REMOTE
                                  if (state._addr >> 48) != _runtime.node_index()
                                  else _PEER_CHECK_INTERVAL)
        self._peer_check_at = time.monotonic() + self._peer_check_every
        self._poll_args = None
        self._ready = None                 # fileno()'s _Readiness, made on first use
        self._handle = state._addr
        _register_finalizer(self)
        # A child's bootstrap forgets the finalizers registered before it
        # (those of the connections among its arguments), then runs the
        # after-fork hooks: register again there.
        util.register_after_fork(self, _register_finalizer)
        return self

    def __reduce__(self):
        self._check_closed()
        self._state.handle(self._end, _OP_PICKLE)
        return _rebuild, (self._state, self._end, self._rch, self._wch,
                          self._readable, self._writable)

    def __repr__(self):
        if self._handle is None:
            return f'<{type(self).__module__}.{type(self).__qualname__} closed>'
        mode = ''.join(m for m, ok in (('r', self._readable), ('w', self._writable)) if ok)
        return (f'<{type(self).__module__}.{type(self).__qualname__} '
                f'pipe={self._state._addr:#x} end={self._end} mode={mode}>')

    # --- state ------------------------------------------------------------

    def _check_closed(self):
        if self._handle is None:
            raise OSError("handle is closed")
        if not _runtime.alive(self._gen):
            raise OSError("handle is closed (its dragon_mp run has ended)")

    def _check_readable(self):
        if not self._readable:
            raise OSError("connection is write-only")

    def _check_writable(self):
        if not self._writable:
            raise OSError("connection is read-only")

    def _bad_message_length(self):
        if self._writable:
            self._readable = False
        else:
            self.close()
        raise OSError("bad message length")

    @property
    def closed(self):
        """True if the connection is closed"""
        return self._handle is None

    @property
    def readable(self):
        """True if the connection is readable"""
        return self._readable

    @property
    def writable(self):
        """True if the connection is writable"""
        return self._writable

    def fileno(self):
        """File descriptor or handle of the connection: readable while a
        message is waiting or the other end is gone, as a pipe's would be
        (select, selectors, asyncio, stdlib's connection.wait). Only a
        signal: read the message with recv()."""
        self._check_closed()
        if self._ready is None:
            self._ready = _Readiness(self)
        return self._ready.fd

    def close(self):
        """Close the connection"""
        if self._ready is not None:
            self._ready.close()
            self._ready = None
        if self._handle is not None:
            # The channels stay referenced until the object dies: another
            # thread may still be waiting on them.
            try:
                self._finalizer()
            finally:
                self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.close()

    def _peer_gone(self, force=False):
        """Whether the other end is gone (it may have died without closing)."""
        now = time.monotonic()
        if not force and now < self._peer_check_at:
            return False
        self._peer_check_at = now + self._peer_check_every
        try:
            return bool(self._state.peer_gone(self._end))
        except Exception:
            return False

    # --- sending ------------------------------------------------------------

    def send_bytes(self, buf, offset=0, size=None):
        """Send the bytes data from a bytes-like object"""
        self._check_closed()
        self._check_writable()
        m = memoryview(buf)
        if m.itemsize > 1:
            m = m.cast('B')
        n = m.nbytes
        if offset < 0:
            raise ValueError("offset is negative")
        if n < offset:
            raise ValueError("buffer length < offset")
        if size is None:
            size = n - offset
        elif size < 0:
            raise ValueError("size is negative")
        elif offset + size > n:
            raise ValueError("buffer length < offset + size")
        if type(buf) is bytes and offset == 0 and size == n:
            data = buf
        else:
            data = m[offset:offset + size]
            if not m.c_contiguous and size:
                data = data.tobytes()   # C takes contiguous buffers only
        # C takes any such buffer, read-only too, and copies it once.
        self._send(data)

    def send(self, obj):
        """Send a (picklable) object"""
        self._check_closed()
        self._check_writable()
        if time.monotonic() >= self._peer_check_at:
            self._peer_gone()               # see _send
        # Pickled as a Queue's put does: large buffers go into the pool with
        # one copy (dragon_mp.reduction.dumps_parts).
        self._check_rc(_core.fast().send_obj(self._wch._addr, obj, 0))

    def _send(self, data):
        if time.monotonic() >= self._peer_check_at:
            # Messages to a reader that died would pile up unread: now and
            # then, look (a dead reader's pipe gets closed: BrokenPipeError).
            self._peer_gone()
        self._check_rc(_core.fast().send(self._wch._addr, data, 0))

    @staticmethod
    def _check_rc(rc):
        if rc < 0:
            if rc == _CLOSED:
                raise BrokenPipeError(errno.EPIPE, 'Broken pipe')
            _core.raise_for(rc)

    # --- receiving ------------------------------------------------------------

    def _recv_fast(self, whole=False):
        """The next message's bytes, straight from the channel (C copies them once).
        whole: a large message as it is, a _fastpath.Message over its pool
        block (to read or unpickle from; _release() it after)."""
        fp, addr, inline = _core.fast(), self._rch._addr, self._rch._inline
        recv = fp.recv_msg if whole else fp.recv
        idle = 0
        while True:
            r = recv(addr, WAIT_SLICE_NS, inline)
            if r.__class__ is not int:
                return r
            if r == _TIMED_OUT:
                if self._handle is None:
                    raise OSError(errno.EBADF, "handle is closed")
                # Nothing for a whole slice: has the other end died? Looked
                # at after 1, 2, 4 and 8 idle slices, then once a second:
                # each look runs Go, whose scheduler thread then polls for a
                # while (pyext/fastpath_chan.c, recv_wait), and a reader may
                # wait for hours.
                idle += 1
                if (idle & (idle - 1) == 0 and idle < 10) or idle % 10 == 0:
                    self._peer_gone()
                continue
            if r == _CLOSED:
                raise EOFError
            _core.raise_for(r)

    def recv_bytes(self, maxlength=None):
        """
        Receive bytes data as a bytes object.
        """
        self._check_closed()
        self._check_readable()
        if maxlength is not None and maxlength < 0:
            raise ValueError("negative maxlength")
        if maxlength is None:
            data = self._recv_fast()
        else:
            # Too long: the message is taken (and dropped) all the same.
            msg = self._recv_fast(whole=True)
            try:
                data = bytes(msg) if len(msg) <= maxlength else None
            finally:
                _release(msg)
        if self._ready is not None:
            self._ready.consumed()
        if data is None:
            self._bad_message_length()
        return data

    def recv_bytes_into(self, buf, offset=0):
        """
        Receive bytes data into a writeable bytes-like object.
        Return the number of bytes read.
        """
        self._check_closed()
        self._check_readable()
        with memoryview(buf) as m:
            # Get bytesize of arbitrary buffer
            itemsize = m.itemsize
            bytesize = itemsize * len(m)
            if offset < 0:
                raise ValueError("negative offset")
            elif offset > bytesize:
                raise ValueError("offset too large")
            msg = self._recv_fast(whole=True)
            try:
                size = len(msg)
                if bytesize < offset + size:
                    raise BufferTooShort(bytes(msg))
                # Message can fit in dest (copied as stdlib's readinto does).
                with memoryview(msg) as s, \
                        m[offset // itemsize:(offset + size) // itemsize] as d, \
                        d.cast('B') as dst:
                    k = min(dst.nbytes, size)
                    dst[:k] = s[:k]
            finally:
                _release(msg)
                if self._ready is not None:
                    self._ready.consumed()
            return size

    def recv(self):
        """Receive a (picklable) object"""
        self._check_closed()
        self._check_readable()
        data = self._recv_fast(whole=True)
        if self._ready is not None:
            self._ready.consumed()
        if data.__class__ is bytes:
            return ForkingPickler.loads(data)
        # Unpickled straight from the pool block: each large payload is
        # copied once, into its new object.
        with data:
            return ForkingPickler.loads(data)

    def poll(self, timeout=0.0):
        """Whether there is any input available to be read"""
        self._check_closed()
        self._check_readable()
        if self._poll_args is None:
            self._poll_args = ((ctypes.c_uint64 * 1)(self._rch._addr),
                               (ctypes.c_uint8 * 1)(_MODE_MESSAGE), (ctypes.c_uint8 * 1)())
        addrs, modes, ready = self._poll_args
        return _wait_loop([self], addrs, modes, 1, None, 0, ready, _deadline(timeout))

    # --- waiting ------------------------------------------------------------

    def _wait_target(self):
        """(channel address, dmp_wait mode) that tells when wait() reports this end."""
        if self._readable:
            return self._rch._addr, _MODE_MESSAGE
        # A write-only end is "ready" once its readers are gone, as a pipe's
        # write end polls in error.
        return self._wch._addr, _MODE_CLOSE


class _Readiness:
    """What Connection.fileno() returns: a descriptor that is readable while
    the connection has a message waiting or its peer is gone.

    Made on the first fileno() call, never before, so a connection that nobody
    selects on pays nothing. The descriptor is a FIFO in the run's shm
    directory named after the channel, opened by every process of this host
    that asks for the end's fileno(): its readable state is shared, as an OS
    pipe's is when several processes read one end (pebble's workers do, and
    look at it under their lock before they recv). A thread of each such
    process waits on the channel with dmp_wait (which takes nothing from it)
    and writes a byte into the FIFO when a message waits and the FIFO is
    empty; a recv that leaves nothing waiting empties the FIFO, for every
    process at once. While the FIFO is readable each thread also looks again
    every RECHECK seconds and empties it once nothing waits (a process that
    never called fileno() may have taken the message). The run's teardown
    removes the FIFOs with its other files.

    Each look-then-write and look-then-empty holds flock(LOCK_EX) on the FIFO
    (in-process, self._cond orders the threads). Without it a thread could
    see the message, another process take it and empty the FIFO, and the
    thread then write its byte: readable with nothing waiting. Programs that
    read a pipe shared by several processes as "poll(0) under our lock, then
    recv" (pebble's workers) would block in recv holding their lock. With it,
    a byte written for a message taken meanwhile is emptied by the taker's
    own recv before that returns, so under such a lock poll(0) is true only
    when a message waits, as with an OS pipe.
    """

    RECHECK = 0.005

    def __init__(self, conn):
        from . import reaper
        addr, mode = conn._wait_target()
        path = os.path.join(reaper.shm_dir(),
                            f'dragon_mp.{_runtime.runid()}.ready.{addr:x}.{mode}')
        try:
            os.mkfifo(path, 0o600)
        except FileExistsError:
            pass
        # O_RDWR: a FIFO opened so never blocks and never reads EOF.
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._cond = threading.Condition()
        self._closed = False
        self._addrs = (ctypes.c_uint64 * 1)(addr)
        self._modes = (ctypes.c_uint8 * 1)(mode)
        # The thread must not keep the connection alive; when it dies, this
        # closes (the thread may be waiting for a recv that will never come).
        self._conn = weakref.ref(conn, lambda _, self=self: self.close())
        threading.Thread(target=self._watch, daemon=True,
                         name='dragon_mp Connection.fileno').start()

    def _ready_now(self, conn, force=False):
        ready = (ctypes.c_uint8 * 1)()
        rc = _wait_fn()(self._addrs, self._modes, 1, None, 0, 0, ready)
        return rc != 0 or conn._peer_gone(force)

    def _signalled(self):
        return bool(select.select([self.fd], [], [], 0)[0])

    def _watch(self):
        dmp_wait = _wait_fn()
        fds = (ctypes.c_int32 * 1)(self._stop_r)
        ready = (ctypes.c_uint8 * 2)()
        try:
            while True:
                with self._cond:
                    while not self._closed and self._signalled():
                        self._cond.wait(self.RECHECK)
                        self._take_back_if_gone()
                    if self._closed:
                        return
                rc = dmp_wait(self._addrs, self._modes, 1, fds, 1, WAIT_SLICE_NS, ready)
                conn = self._conn()
                if conn is None:
                    return
                with self._cond:
                    if self._closed:
                        return
                    fcntl.flock(self.fd, fcntl.LOCK_EX)
                    try:
                        if (rc < 0 or self._ready_now(conn, force=rc == 0)) and not self._signalled():
                            os.write(self.fd, b'\0')
                    finally:
                        fcntl.flock(self.fd, fcntl.LOCK_UN)
                del conn
                if rc < 0:
                    return              # the run has ended: stays readable, recv raises
        finally:
            with self._cond:
                self._closed = True
            for fd in (self.fd, self._stop_r, self._stop_w):
                os.close(fd)

    def consumed(self):
        """After a recv on this end: take the signal back if nothing is left."""
        with self._cond:
            self._take_back_if_gone()

    def _take_back_if_gone(self):
        # Under self._cond (self.fd is open while not closed). Nothing to
        # take back while the FIFO is empty: no lock, no look at the channel.
        if self._closed or not self._signalled():
            return
        conn = self._conn()
        if conn is None:
            return
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            if not self._ready_now(conn):
                try:
                    while os.read(self.fd, 4096):
                        pass
                except BlockingIOError:
                    pass
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self):
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify()
            os.write(self._stop_w, b'\0')       # wakes dmp_wait; the thread closes the descriptors


def _rebuild(state, end, rch, wch, readable, writable):
    state.handle(end, _OP_ADOPT)
    return Connection._make(state, end, rch, wch, readable, writable)


def Pipe(duplex=True):
    '''
    Returns pair of connection objects at either end of a pipe
    '''
    _runtime.current()
    if duplex:
        ch0, ch1 = _Channel(0), _Channel(0)
        state = _PipeState(ch0, ch1)
        c1 = Connection._make(state, 0, ch0, ch1, True, True)
        c2 = Connection._make(state, 1, ch1, ch0, True, True)
    else:
        ch = _Channel(0)
        state = _PipeState(ch, None)
        c1 = Connection._make(state, 0, ch, None, True, False)
        c2 = Connection._make(state, 1, None, ch, False, True)
    return c1, c2


def _fileobj_to_fd(fileobj):
    # As selectors does (stdlib's wait registers every object with one).
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError("Invalid file object: {!r}".format(fileobj)) from None
    if fd < 0:
        raise ValueError("Invalid file descriptor: {}".format(fd))
    return fd


def _deadline(timeout):
    if timeout is None:
        return None
    return time.monotonic_ns() + max(int(timeout * 1e9), 0)


def _wait_loop(conns, addrs, modes, n, fdarr, nf, ready, deadline):
    """dmp_wait in slices until something is ready (True) or the deadline."""
    dmp_wait = _wait_fn()
    slice_ns = _next_slice(deadline)
    while True:
        rc = dmp_wait(addrs, modes, n, fdarr, nf, slice_ns, ready)
        if rc < 0:
            _core.raise_for(rc)
        # A peer may have died without closing its end: if so its pipe is
        # closed now, and one more look reports it. (Looked at every
        # _PEER_CHECK_INTERVAL(_REMOTE) at most, and after every empty slice.)
        gone = False
        force = rc == 0 and slice_ns > 0
        for i, c in enumerate(conns):
            if not ready[i] and c._peer_gone(force):
                gone = True
        if gone:
            slice_ns = 0
            continue
        if rc > 0:
            return True
        if deadline is not None and time.monotonic_ns() >= deadline:
            return False
        slice_ns = _next_slice(deadline)


def _next_slice(deadline):
    if deadline is None:
        return WAIT_SLICE_NS
    return min(WAIT_SLICE_NS, max(deadline - time.monotonic_ns(), 0))


def wait(object_list, timeout=None):
    '''
    Wait till an object in object_list is ready/readable.

    Returns list of those objects in object_list which are ready/readable.
    '''
    object_list = list(object_list)
    conns, fds = [], []
    for obj in object_list:
        if isinstance(obj, Connection):
            obj._check_closed()
            conns.append(obj)
        else:
            fds.append(_fileobj_to_fd(obj))
    n, nf = len(conns), len(fds)
    targets = [c._wait_target() for c in conns]
    addrs = (ctypes.c_uint64 * max(n, 1))(*(a for a, _ in targets))
    modes = (ctypes.c_uint8 * max(n, 1))(*(m for _, m in targets))
    fdarr = (ctypes.c_int32 * max(nf, 1))(*fds)
    ready = (ctypes.c_uint8 * max(n + nf, 1))()

    if not _wait_loop(conns, addrs, modes, n, fdarr, nf, ready, _deadline(timeout)):
        return []
    flags = ready[:n + nf]
    result, ic, ifd = [], 0, n
    for obj in object_list:
        if isinstance(obj, Connection):
            ok = flags[ic]
            ic += 1
        else:
            ok = flags[ifd]
            ifd += 1
        if ok:
            result.append(obj)
    return result


from ._stdlib import complete as _complete    # noqa: E402  (last: every stdlib name not defined above)
_complete(globals(), 'connection')

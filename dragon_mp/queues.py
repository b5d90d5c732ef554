"""Queues over shared-memory channels.

A Queue is a channel in the run's pool: put pickles the object and copies
the bytes into the channel, get copies them out and unpickles. No feeder
thread and no pipe: a put is visible to every consumer when it returns, and
an object that cannot be pickled raises in put itself (stdlib's Queue would
report it from its feeder thread and drop the object), leaving the queue as
it was.
"""

import ctypes
import threading

from queue import Empty, Full        # noqa: F401  (stdlib raises these)

from . import _core, _runtime
from ._shared import SharedObject, sliced, timeout_ns
from .reduction import ForkingPickler

__all__ = ['Queue', 'SimpleQueue']

_TIMED_OUT = -_core.TIMEOUT
_FULL = -_core.FULL         # how dmp_send reports that a bounded channel stayed full
_tls = threading.local()


class _Channel(SharedObject):
    """One process's handle on a channel: bytes in, bytes out."""

    _retain_fn = 'ChannelRetain'
    _drop_fn = 'ChannelRelease'

    def __init__(self, capacity):
        _runtime.current()
        gc = _core.gocore()
        addr = _core.call(gc.ChannelCreate, capacity, 0)
        self._adopt(addr)
        self._inline = _core.call(gc.ChannelInline, addr)

    @classmethod
    def _attach(cls, addr, inline):
        self = cls.__new__(cls)
        _runtime.current()
        self._adopt(addr)
        self._inline = inline
        return self

    def __reduce__(self):
        return _Channel._attach, (self._reference_for_pickle(), self._inline)

    def send(self, data, block=True, timeout=None):
        fp = _core.fast()
        if fp is not None:
            rc = fp.send(self._addr, data, timeout_ns(block, timeout))
        else:
            lib, addr = _core.clib(), self._addr
            data, n = _pointer(data)
            rc = sliced(lambda ns: lib.dmp_send(addr, data, n, ns),
                        timeout_ns(block, timeout), _FULL)
        if rc < 0:
            _core.raise_for(rc)         # _FULL: queue.Full

    def recv(self, block=True, timeout=None):
        fp = _core.fast()
        if fp is not None:
            r = fp.recv(self._addr, timeout_ns(block, timeout), self._inline)
            if r.__class__ is bytes:
                return r
            _core.raise_for(r)          # _TIMED_OUT: queue.Empty
        lib, addr = _core.clib(), self._addr
        buf = _buffer(self._inline)
        length, offset = ctypes.c_uint64(), ctypes.c_uint64()
        rc = sliced(lambda ns: lib.dmp_recv(addr, buf, len(buf), ns,
                                            ctypes.byref(length), ctypes.byref(offset)),
                    timeout_ns(block, timeout), _TIMED_OUT)
        if rc == 0:
            return ctypes.string_at(buf, length.value)
        if rc == 1:
            # A large message: read it straight from the pool, then free it.
            try:
                return ctypes.string_at(lib.dmp_pool_base() + offset.value, length.value)
            finally:
                lib.dmp_release_msg(addr, offset.value, length.value)
        _core.raise_for(rc)

    def __len__(self):
        return _core.call(_core.gocore().ChannelLen, self._addr)


def _pointer(data):
    """(something ctypes passes as a pointer, length) for a bytes-like object."""
    if type(data) is bytes:
        return data, len(data)
    view = memoryview(data).cast('B')
    n = view.nbytes
    if n == 0:
        return b'', 0
    if view.readonly:
        return bytes(view), n
    return (ctypes.c_char * n).from_buffer(view), n


def _buffer(size):
    """A per-thread receive buffer for inline messages."""
    buf = getattr(_tls, 'buf', None)
    if buf is None or len(buf) < size:
        buf = _tls.buf = ctypes.create_string_buffer(max(size, 64))
    return buf


class Queue:
    """multiprocessing.Queue over a dragon_mp channel."""

    def __init__(self, maxsize=0, *, ctx=None):
        self._maxsize = max(int(maxsize), 0)      # 0: unbounded, as in stdlib
        self._channel = _Channel(self._maxsize)
        self._closed = False
        self._bind_fast()

    def __getstate__(self):
        return self._maxsize, self._channel

    def __setstate__(self, state):
        self._maxsize, self._channel = state
        self._closed = False
        self._bind_fast()

    def _bind_fast(self):
        """put/get are the C methods of a _fastpath.Chan when the fast path is there."""
        self._fast = None
        fp = _core.fast()
        if fp is not None:
            ch = self._channel
            c = self._fast = fp.Chan(ch._addr, ch._inline, ch)   # owner: keeps the channel alive
            if type(self) is Queue:
                # Fast path: the bound C methods, no Python frame per call.
                # (A subclass's overrides must stay in charge, so only here.)
                self.put, self.get = c.put, c.get
                self.put_nowait, self.get_nowait = c.put_nowait, c.get_nowait

    def _check_closed(self):
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")

    def put(self, obj, block=True, timeout=None):
        if self._fast is not None:
            return self._fast.put(obj, block, timeout)
        self._check_closed()
        # Pickle first: a failure leaves the queue untouched.
        data = ForkingPickler.dumps(obj)
        self._channel.send(data, block, timeout)

    def get(self, block=True, timeout=None):
        if self._fast is not None:
            return self._fast.get(block, timeout)
        self._check_closed()
        return ForkingPickler.loads(self._channel.recv(block, timeout))

    def put_nowait(self, obj):
        return self.put(obj, False)

    def get_nowait(self):
        return self.get(False)

    def qsize(self):
        return len(self._channel)

    def empty(self):
        return self.qsize() == 0

    def full(self):
        return self._maxsize > 0 and self.qsize() >= self._maxsize

    def close(self):
        """This process will put and get no more (the queue lives on for others)."""
        self._closed = True
        if self._fast is not None:
            self._fast.close()

    def join_thread(self):
        # There is no feeder thread: a put has completed when it returns.
        assert self._closed, f"Queue {self!r} not closed"

    def cancel_join_thread(self):
        pass


class SimpleQueue:
    """multiprocessing.SimpleQueue: an unbounded queue without timeouts."""

    def __init__(self, *, ctx=None):
        self._channel = _Channel(0)
        self._closed = False

    def __getstate__(self):
        return self._channel

    def __setstate__(self, state):
        self._channel = state
        self._closed = False

    def close(self):
        self._closed = True

    def empty(self):
        return len(self._channel) == 0

    def get(self):
        if self._closed:
            raise OSError("handle is closed")
        fp, ch = _core.fast(), self._channel
        if fp is not None:
            return fp.get(ch._addr, -1, ch._inline)
        return ForkingPickler.loads(ch.recv())

    def put(self, obj):
        if self._closed:
            raise OSError("handle is closed")
        fp, ch = _core.fast(), self._channel
        if fp is not None:
            return fp.put(ch._addr, obj, -1)
        ch.send(ForkingPickler.dumps(obj))

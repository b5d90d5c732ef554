"""Pickling support: stdlib's, and passing file descriptors over dragon_mp pipes.

dragon_mp objects (queues, locks, ...) pickle as addresses in the run's shared
memory, through their own __reduce__; everything else pickles as stdlib does.

dumps_parts: how a Queue, a Pipe and a Pool pickle an object (protocol 5,
ForkingPickler's reducers) without copying its large buffers: see below.

send_handle/recv_handle: stdlib's pass a descriptor with SCM_RIGHTS over the
Unix socket behind a Connection. A dragon_mp Connection is a channel, so the
descriptor goes as stdlib's resource_sharer.DupFd (what stdlib pickles a
socket or an fd as outside a process start): the receiver gets a duplicate
from the sender's sharer thread, over a Unix socket authenticated with the
run's authkey. One node only, as descriptors are.
"""

from multiprocessing.reduction import *          # noqa: F401,F403
from multiprocessing.reduction import (          # noqa: F401
    ACKNOWLEDGE, AbstractReducer, DupFd, ForkingPickler, HAVE_SEND_HANDLE,
    dump, recvfds, register, sendfds)
from multiprocessing import reduction as _stdlib
import sys as _sys

__all__ = list(_stdlib.__all__)


PROTOCOL = 5      # dumps_parts' protocol: buffers (numpy's too) pickle in band without a copy


class _Parts(list):
    """A pickler's file that keeps what is written as a list of parts."""
    __slots__ = ()
    write = list.append


def dumps_parts(obj):
    """The pickle of obj as a list of bytes-like parts, to be sent gathered.

    CPython's pickler writes a payload of 64 KiB or more (a large bytes,
    bytearray, str, or a PickleBuffer such as numpy gives at protocol 5)
    straight to its file as the object itself, so the list holds the
    payloads, not copies: the channel copies each one once, into the pool
    (pyext/fastpath_objects.c). pickle.loads(b''.join(parts)) is obj.
    """
    parts = _Parts()
    p = ForkingPickler(parts, PROTOCOL)
    np = _sys.modules.get('numpy')
    if np is not None and np.ndarray not in p.dispatch_table:
        p.dispatch_table[np.ndarray] = _reduce_ndarray
    p.dump(obj)
    return parts


def _reduce_ndarray(a):
    # At protocol 5 numpy pickles a read-only array's buffer as bytes, and
    # it arrives read-only; stdlib's queues pickle at protocol 4, where every
    # array arrives writable. Same result as stdlib: a read-only array takes
    # the protocol 4 way (one more copy, only for those).
    return a.__reduce_ex__(PROTOCOL if a.flags.writeable else 4)


def send_handle(conn, handle, destination_pid):
    """Send a file descriptor over a connection to process destination_pid."""
    if _is_dragon(conn):
        from .resource_sharer import DupFd
        conn.send(DupFd(handle))
        return
    return _stdlib.send_handle(conn, handle, destination_pid)


def recv_handle(conn):
    """Receive a file descriptor sent with send_handle (it is the caller's to close)."""
    if _is_dragon(conn):
        return conn.recv().detach()
    return _stdlib.recv_handle(conn)


def _is_dragon(conn):
    from .connection import Connection
    return isinstance(conn, Connection)


from ._stdlib import complete as _complete    # noqa: E402  (last: every stdlib name not defined above)
_complete(globals(), 'reduction')

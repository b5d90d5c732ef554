"""Pickling support: stdlib's, and passing file descriptors over dragon_mp pipes.

dragon_mp objects (queues, locks, ...) pickle as addresses in the run's shared
memory, through their own __reduce__; everything else pickles as stdlib does.

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

__all__ = list(_stdlib.__all__)


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

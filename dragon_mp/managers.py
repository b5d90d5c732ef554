"""Managers: stdlib's multiprocessing.managers, with servers started by dragon_mp.

A manager's server is an ordinary process that serves objects over stdlib's
connection.Listener/Client (AF_UNIX or TCP sockets, HMAC authentication), so
everything here is stdlib's implementation: Server, BaseProxy, Token,
AutoProxy, the proxy types, RemoteError, dispatch, ... are stdlib's very
objects (a dragon_mp proxy *is* a multiprocessing proxy, and the two
interoperate). What differs is where a server starts:

- BaseManager, SyncManager and SharedMemoryManager here are subclasses of
  stdlib's classes of the same names whose `ctx` defaults to dragon_mp's
  default context, so `start()` (and `with Manager() as m`) launches the
  server as a dragon_mp Process. Pass `ctx=` to choose another context.
- In a multi-node run a manager's server runs on the node that starts it and
  listens on that node's network address (TCP), so its proxies work from
  every node.
- SyncManager's `Pool` typeid builds a dragon_mp Pool (stdlib's would fork
  its workers inside the server with stdlib's default context).

Registering a typeid on a dragon_mp manager class never changes stdlib's
classes, and vice versa after import (each class copies its registry, as
stdlib's own subclasses do).
"""

import sys as _sys

from multiprocessing import managers as _stdlib

# Every name of stdlib's module (classes, proxies, helpers), the very same
# objects; the three manager classes are replaced below.
from ._stdlib import complete as _complete    # noqa: E402
_complete(globals(), 'managers')

__all__ = list(_stdlib.__all__)


def _default_context():
    from . import context
    return context._default_context


class BaseManager(_stdlib.BaseManager):
    """stdlib's BaseManager; the server starts with dragon_mp's context by default."""

    # Registrations on this class (and on subclasses that do not register
    # themselves) stay out of stdlib's BaseManager, like any subclass's.
    _registry = {}

    def __init__(self, address=None, authkey=None, serializer='pickle',
                 ctx=None, *, shutdown_timeout=1.0):
        if address is None and serializer == 'pickle':
            # In a multi-node run, proxies may go to other nodes: serve on
            # this node's network address (TCP) instead of a Unix socket.
            from . import _runtime
            ip = _runtime.node_ip()
            if ip is not None:
                address = (ip, 0)
        # stdlib takes shutdown_timeout since 3.11; 3.10's waits 1.0 s (the default) for the server.
        kwargs = {'shutdown_timeout': shutdown_timeout} if _sys.version_info >= (3, 11) else {}
        super().__init__(address, authkey, serializer,
                         ctx if ctx is not None else _default_context(), **kwargs)

    def start(self, *args, **kwargs):
        # The server listens on this node's address: it must run here.
        from . import placement
        with placement.local():
            return super().start(*args, **kwargs)


def _Pool(processes=None, initializer=None, initargs=(), maxtasksperchild=None,
          context=None):
    """SyncManager's Pool: a dragon_mp pool started inside the manager's server."""
    context = context if context is not None else _default_context()
    return context.Pool(processes, initializer, initargs, maxtasksperchild)


class SyncManager(BaseManager, _stdlib.SyncManager):
    """stdlib's SyncManager (same typeids and proxies) on dragon_mp's context.

    `dragon_mp.Manager()` returns a started instance of this class.
    """

    # Our BaseManager comes first in the MRO: take stdlib SyncManager's
    # typeids explicitly instead of BaseManager's empty registry.
    _registry = dict(_stdlib.SyncManager._registry)


SyncManager.register('Pool', _Pool, _stdlib.PoolProxy)


if _stdlib.HAS_SHMEM:
    class SharedMemoryManager(BaseManager, _stdlib.SharedMemoryManager):
        """stdlib's SharedMemoryManager on dragon_mp's context.

        Segments are stdlib's POSIX shared memory (/dev/shm/psm_*), tracked
        by the server and unlinked at its shutdown.
        """

        # stdlib's __init__ takes (*args, **kwargs) and starts the resource
        # tracker; BaseManager.__init__ above supplies the default context.


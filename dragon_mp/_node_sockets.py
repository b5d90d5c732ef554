"""Manager connections to another node: they fail when that node is lost.

A manager's server is stdlib's, listening on TCP in a multi-node run, and a
proxy on another node talks to it over a plain socket. If the server's node
is cut off, a proxy blocked in a call would wait until TCP gives up (many
minutes). So, in a multi-node run, the managers' client side (stdlib's
`listener_client['pickle']`, which every proxy and manager uses) is `Client`
here:

- connecting to an address of a node that is lost raises ConnectionError at
  once, naming the node; a connect in progress looks at the lost-node marks
  (shared memory, set by this node's agent) every WATCH s, so it ends too;
- a connection to another node is watched: while any is open, a thread looks
  at the marks every WATCH s and shuts the connections of a lost node down,
  so that a blocked call ends; the connection then raises ConnectionError
  naming the node. The watch starts before the authentication handshake.

Connections to this node, and everything else about them, are stdlib's.
"""

import errno
import json
import os
import select
import socket
import threading
import time
import weakref
from multiprocessing import connection as _connection

from . import _core, _runtime

__all__ = []   # internal: nothing for `from ... import *`

WATCH = 0.1         # s between looks at the lost-node marks

_lock = threading.Lock()
_watched = {}       # node -> WeakSet of connections to it
_thread = None
_stdlib_client = _connection.Client


def install():
    """Make the managers' client side this module's (multi-node runs only)."""
    from multiprocessing import managers
    listener, client = managers.listener_client['pickle']
    if client is not Client:
        managers.listener_client['pickle'] = (listener, Client)


def _node_of(address):
    """The node index that listens at address (ip, port), if another node's."""
    if not (isinstance(address, tuple) and len(address) == 2):
        return None
    peers = os.environ.get('DRAGON_MP_PEERS')
    if not peers:
        return None
    for node, addrs in json.loads(peers).items():
        if addrs['mesh'].rpartition(':')[0] == address[0] and int(node) != _runtime.node_index():
            return int(node)
    return None


def _lost_error(node):
    names = _runtime.node_names()
    host = f' ({names[node]})' if node < len(names) else ''
    return ConnectionError(f'node {node}{host} is lost: its manager cannot be reached')


def _is_lost(node):
    return _core.gocore().NodeLost(node)


class _NodeConnection(_connection.Connection):
    """A Connection to another node's manager: errors after its loss name the node."""

    _node = None

    def _send(self, buf, write=os.write):
        if _is_lost(self._node):
            raise _lost_error(self._node)
        try:
            return super()._send(buf, write)
        except (OSError, EOFError):
            if _is_lost(self._node):
                raise _lost_error(self._node) from None
            raise

    def _recv(self, size, read=os.read):
        try:
            return super()._recv(size, read)
        except (OSError, EOFError):
            if _is_lost(self._node):
                raise _lost_error(self._node) from None
            raise


def Client(address, family=None, authkey=None):
    """stdlib's connection.Client, watched when address is another node's."""
    node = _node_of(address)
    if node is None:
        return _stdlib_client(address, family, authkey)
    if authkey is not None and not isinstance(authkey, bytes):
        raise TypeError('authkey should be a byte string')
    c = _NodeConnection(_connect(address, node).detach())
    c._node = node
    _watch(node, c)
    try:
        if authkey is not None:             # as stdlib's Client does
            _connection.answer_challenge(c, authkey)
            _connection.deliver_challenge(c, authkey)
    except BaseException:
        c.close()
        raise
    return c


def _connect(address, node):
    """A TCP socket connected to address on another node, in steps of WATCH s."""
    if _is_lost(node):
        raise _lost_error(node)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setblocking(False)
        err = s.connect_ex(address)
        while err in (errno.EINPROGRESS, errno.EALREADY):
            _, writable, _ = select.select([], [s], [], WATCH)
            if writable:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            elif _is_lost(node):
                raise _lost_error(node)
        if err:
            if _is_lost(node):
                raise _lost_error(node)
            raise OSError(err, os.strerror(err))
        s.setblocking(True)
        return s
    except BaseException:
        s.close()
        raise


def _watch(node, conn):
    global _thread
    with _lock:
        _watched.setdefault(node, weakref.WeakSet()).add(conn)
        if _thread is None:
            _thread = threading.Thread(target=_watcher, daemon=True,
                                       name='dragon_mp manager connections')
            _thread.start()


def _watcher():
    global _thread
    while True:
        time.sleep(WATCH)
        with _lock:
            watched = {n: [c for c in conns if not c.closed] for n, conns in _watched.items()}
            for n, conns in watched.items():
                if not conns:
                    del _watched[n]
            if not _watched:
                _thread = None
                return
        for node, conns in watched.items():
            if conns and _is_lost(node):
                for c in conns:
                    _shutdown(c)


def _shutdown(conn):
    """Wake whoever is blocked on conn: shut its socket down (the descriptor stays)."""
    try:
        s = socket.socket(fileno=os.dup(conn.fileno()))
    except (OSError, ValueError):
        return
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        s.close()

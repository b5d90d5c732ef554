"""Connections between threads: stdlib's multiprocessing.dummy.connection, re-exported.

Listener, Client, Pipe and Connection are built on queue.Queue; addresses are
ignored except as keys (families == [None]).
"""

from multiprocessing.dummy import connection as _stdlib
from multiprocessing.dummy.connection import *      # noqa: F401,F403

from .._stdlib import complete as _complete    # noqa: E402  (every stdlib name)
_complete(globals(), 'dummy.connection')

__all__ = list(_stdlib.__all__)

"""Connections between threads: stdlib's multiprocessing.dummy.connection, re-exported.

Listener, Client, Pipe and Connection are built on queue.Queue; addresses are
ignored except as keys (families == [None]).
"""

import types as _types

from multiprocessing.dummy import connection as _stdlib
from multiprocessing.dummy.connection import *      # noqa: F401,F403

globals().update({name: value for name, value in vars(_stdlib).items()
                  if not name.startswith('__')
                  and not isinstance(value, _types.ModuleType)})

__all__ = list(_stdlib.__all__)

"""The multiprocessing API on threads: stdlib's multiprocessing.dummy, re-exported.

`dragon_mp.dummy` is to dragon_mp what `multiprocessing.dummy` is to
multiprocessing: Process is a thread, Queue is queue.Queue, Pool is a
ThreadPool, Manager() returns the module itself. Nothing in it depends on how
processes are started, so these are stdlib's very objects.
"""

from multiprocessing import dummy as _stdlib
from multiprocessing.dummy import *         # noqa: F401,F403

# The names outside __all__ too (DummyProcess, Namespace, Value, Array,
# dict, list, shutdown, ...); its `connection` is dragon_mp.dummy.connection.
from .._stdlib import complete as _complete    # noqa: E402
_complete(globals(), 'dummy')

__all__ = list(_stdlib.__all__)

from . import connection        # noqa: E402,F401  (as stdlib's package imports its own)


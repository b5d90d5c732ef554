"""Contexts: the object behind `dragon_mp.X` for every public name X.

DragonContext is stdlib's BaseContext with dragon_mp's own implementations
of what the Go core provides; the names it does not override yet come from
stdlib and are built on pipes and POSIX semaphores, which work between
dragon_mp processes too (file descriptors are passed to children).

Start methods: every dragon_mp process is a fresh interpreter started by the
Go process manager (spawn semantics). The method is called 'dragon'; stdlib's
names are accepted and mean the same thing, because forking a process that
has loaded the Go runtime is never safe.
"""

import os

from multiprocessing import context as _stdlib_context
from multiprocessing.context import (        # noqa: F401  re-exported
    AuthenticationError, BufferTooShort, ProcessError, TimeoutError)

from . import process

__all__ = ['DragonContext', 'BaseContext', 'ProcessError', 'BufferTooShort',
           'TimeoutError', 'AuthenticationError']

START_METHOD = 'dragon'
_chosen_method = [None]      # what set_start_method chose (the start is the same)
_ACCEPTED_METHODS = (START_METHOD, 'spawn', 'fork', 'forkserver')


class BaseContext(_stdlib_context.BaseContext):
    ProcessError = ProcessError
    BufferTooShort = BufferTooShort
    TimeoutError = TimeoutError
    AuthenticationError = AuthenticationError

    current_process = staticmethod(process.current_process)
    parent_process = staticmethod(process.parent_process)
    active_children = staticmethod(process.active_children)

    def cpu_count(self):
        """The CPUs this run may use: on one node this process's affinity (not
        the machine's count); in a multi-node run the sum over all its nodes,
        as DragonHPC reports, so Pool() gets a worker per CPU of the cluster."""
        from . import _runtime
        cpus = _runtime.node_cpus()
        if cpus:
            return sum(cpus)
        return len(os.sched_getaffinity(0))

    def Pipe(self, duplex=True):
        from .connection import Pipe
        return Pipe(duplex)

    def Queue(self, maxsize=0):
        from .queues import Queue
        return Queue(maxsize, ctx=self.get_context())

    def JoinableQueue(self, maxsize=0):
        from .queues import JoinableQueue
        return JoinableQueue(maxsize, ctx=self.get_context())

    def SimpleQueue(self):
        from .queues import SimpleQueue
        return SimpleQueue(ctx=self.get_context())

    def Lock(self):
        from .synchronize import Lock
        return Lock(ctx=self.get_context())

    def RLock(self):
        from .synchronize import RLock
        return RLock(ctx=self.get_context())

    def Condition(self, lock=None):
        from .synchronize import Condition
        return Condition(lock, ctx=self.get_context())

    def Event(self):
        from .synchronize import Event
        return Event(ctx=self.get_context())

    def Barrier(self, parties, action=None, timeout=None):
        from .synchronize import Barrier
        return Barrier(parties, action, timeout, ctx=self.get_context())

    def Semaphore(self, value=1):
        from .synchronize import Semaphore
        return Semaphore(value, ctx=self.get_context())

    def BoundedSemaphore(self, value=1):
        from .synchronize import BoundedSemaphore
        return BoundedSemaphore(value, ctx=self.get_context())

    def RawValue(self, typecode_or_type, *args):
        from .sharedctypes import RawValue
        return RawValue(typecode_or_type, *args)

    def RawArray(self, typecode_or_type, size_or_initializer):
        from .sharedctypes import RawArray
        return RawArray(typecode_or_type, size_or_initializer)

    def Value(self, typecode_or_type, *args, lock=True):
        from .sharedctypes import Value
        return Value(typecode_or_type, *args, lock=lock, ctx=self.get_context())

    def Array(self, typecode_or_type, size_or_initializer, *, lock=True):
        from .sharedctypes import Array
        return Array(typecode_or_type, size_or_initializer, lock=lock,
                     ctx=self.get_context())

    def Manager(self):
        """A started dragon_mp.managers.SyncManager (its server is a dragon_mp process)."""
        from .managers import SyncManager
        m = SyncManager(ctx=self.get_context())
        m.start()
        return m

    def Pool(self, processes=None, initializer=None, initargs=(),
             maxtasksperchild=None):
        from .pool import Pool
        return Pool(processes, initializer, initargs, maxtasksperchild,
                    context=self.get_context())

    def get_context(self, method=None):
        if method is None:
            return self
        if method not in _ACCEPTED_METHODS:
            raise ValueError('cannot find context for %r' % method)
        return _default_context

    def get_start_method(self, allow_none=False):
        """The method set with set_start_method (any of them means the same
        start), else 'dragon'; None with allow_none before one was set, as
        in stdlib."""
        method = _chosen_method[0]
        if method is None:
            return None if allow_none else START_METHOD
        return method

    def set_start_method(self, method, force=False):
        if _chosen_method[0] is not None and not force:
            raise RuntimeError('context has already been set')
        if method is None and force:
            _chosen_method[0] = None
            return
        if method not in _ACCEPTED_METHODS:
            raise ValueError('cannot find context for %r' % method)
        _chosen_method[0] = method

    def get_all_start_methods(self):
        return [START_METHOD, 'spawn', 'fork', 'forkserver']


class DragonContext(BaseContext):
    _name = START_METHOD
    Process = process.Process


_default_context = DragonContext()


# stdlib's module-level names (its __all__ is empty, but code imports them).
from multiprocessing.context import (        # noqa: E402,F401  the very same functions
    assert_spawning, get_spawning_popen, set_spawning_popen)
Process = process.Process
ForkProcess = SpawnProcess = ForkServerProcess = process.Process
DefaultContext = ForkContext = SpawnContext = ForkServerContext = DragonContext

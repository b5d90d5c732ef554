"""Contexts: the object behind `dragon_mp.X` for every public name X.

DragonContext is stdlib's BaseContext with dragon_mp's own implementations
of what the Go core provides; the names it does not override yet come from
stdlib and are built on pipes and POSIX semaphores, which work between
dragon_mp processes too (file descriptors are passed to children).

Start methods: every dragon_mp process is forked from the run's zygote (a
process that never loads the Go runtime) or is a fresh interpreter: spawn
semantics either way, because forking a process that has loaded the Go
runtime is never safe. stdlib's method names (and DragonHPC's 'dragon') each
have their context, as in stdlib, so code that chooses, checks or reports a
method works unchanged; they differ in name only. The default is 'spawn'.
"""

import os

from multiprocessing import context as _stdlib_context
from multiprocessing.context import (        # noqa: F401  re-exported
    AuthenticationError, BufferTooShort, ProcessError, TimeoutError)

from . import process

__all__ = ['BaseContext', 'DefaultContext', 'DragonContext', 'SpawnContext', 'ForkContext',
           'ForkServerContext', 'ProcessError', 'BufferTooShort', 'TimeoutError',
           'AuthenticationError']


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

    def set_forkserver_preload(self, module_names):
        """Modules the zygote imports before it forks children (stdlib: the
        forkserver's). The installed packages a program imports are preloaded
        anyway; this adds others. Sets DRAGON_MP_ZYGOTE_PRELOAD (keeping its
        `-name` entries), read at each start. '__main__' is ignored: the main
        module is never imported by the zygote (its children re-run it)."""
        if not all(type(mod) is str for mod in module_names):
            raise TypeError('module_names must be a list of strings')
        from .zygote import ENV_PRELOAD, preload_setting
        _, forbid = preload_setting()
        names = [m for m in module_names if m != '__main__'] + ['-' + f for f in forbid]
        os.environ[ENV_PRELOAD] = ','.join(names)

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
        try:
            return _concrete_contexts[method]
        except KeyError:
            raise ValueError('cannot find context for %r' % method) from None

    def get_start_method(self, allow_none=False):
        return self._name

    def set_start_method(self, method, force=False):
        raise ValueError('cannot set start method of concrete context')

    def get_all_start_methods(self):
        """stdlib's methods for this platform: every one is accepted and
        starts processes the dragon_mp way. 'dragon' (DragonHPC's name) is
        accepted too, but not listed: code that checks the list against
        stdlib's expects only stdlib's names."""
        return list(START_METHODS)


# One context per method name, as stdlib has: `get_context('fork')` is a
# ForkContext whose get_start_method() says 'fork', whose Process is a
# ForkProcess, and whose children report 'fork' too. All of them start
# processes the same way (Process._Popen): only the name differs.

class DragonContext(BaseContext):
    _name = 'dragon'
    Process = process.DragonProcess


class SpawnContext(BaseContext):
    _name = 'spawn'
    Process = process.SpawnProcess


class ForkContext(BaseContext):
    _name = 'fork'
    Process = process.ForkProcess


class ForkServerContext(BaseContext):
    _name = 'forkserver'
    Process = process.ForkServerProcess


class DefaultContext(BaseContext):
    """What the module functions are bound to: stdlib's DefaultContext, over
    dragon_mp's contexts. Until a method is set it stands for spawn (the
    semantics of every dragon_mp start: the child imports the main module
    again; nothing is inherited by forking)."""
    Process = process.Process

    def __init__(self, context):
        self._default_context = context
        self._actual_context = None

    def get_context(self, method=None):
        if method is None:
            if self._actual_context is None:
                self._actual_context = self._default_context
            return self._actual_context
        return super().get_context(method)

    def set_start_method(self, method, force=False):
        if self._actual_context is not None and not force:
            raise RuntimeError('context has already been set')
        if method is None and force:
            self._actual_context = None
            return
        self._actual_context = self.get_context(method)

    def get_start_method(self, allow_none=False):
        if self._actual_context is None:
            if allow_none:
                return None
            self._actual_context = self._default_context
        return self._actual_context._name


_concrete_contexts = {
    'spawn': SpawnContext(),
    'fork': ForkContext(),
    'forkserver': ForkServerContext(),
    'dragon': DragonContext(),
}
START_METHODS = ('spawn', 'fork', 'forkserver')
_default_context = DefaultContext(_concrete_contexts['spawn'])

# stdlib's module-level names (its __all__ is empty, but code imports them).
from multiprocessing.context import (        # noqa: E402,F401  the very same functions
    assert_spawning, get_spawning_popen, set_spawning_popen)
Process = process.Process
DragonProcess = process.DragonProcess
SpawnProcess = process.SpawnProcess
ForkProcess = process.ForkProcess
ForkServerProcess = process.ForkServerProcess


def _force_start_method(method):
    _default_context._actual_context = _concrete_contexts[method]


from ._stdlib import complete as _complete    # noqa: E402  (last: every stdlib name not defined above)
_complete(globals(), 'context')

"""Process objects: stdlib's BaseProcess, started the dragon_mp way.

The process bookkeeping (current_process, parent_process, active_children,
names, authkeys, exit codes, the bootstrap in the child) is stdlib's own, so a
dragon_mp.Process behaves like a multiprocessing.Process in every detail that
does not depend on how the child is created; only `_Popen` differs.

A child is a fork of the run's zygote (a process that never loads the Go
runtime) or, failing that, a fresh interpreter; both have spawn semantics
(see popen_dragon). In a zygote child `os.getppid()` is the zygote's pid;
`parent_process()` is the process that started it, as under stdlib.

`Process.exit_reason` (not in stdlib) says why a process ended, as a
sentence: "exited 3", "killed by SIGKILL from pid 1234 (bash)", "killed by
the OOM killer (cgroup /x, rss 3.1 GiB, limit 4 GiB)", "SIGSEGV (a memory
fault in the process itself)". It comes from the Go core (gocore/events),
which watches each child it starts: with eBPF when the runtime may load it
(root), else from the exit status, the memory cgroup's OOM count and the
kernel log, which say less ("killed by SIGKILL (sender unknown)") but
nothing false.
"""

import signal as _signal

from multiprocessing import context as _stdlib_context
from multiprocessing.process import (            # noqa: F401  re-exported
    AuthenticationString, BaseProcess, active_children, current_process,
    parent_process)

__all__ = ['BaseProcess', 'Process', 'current_process', 'active_children',
           'parent_process']


class Process(_stdlib_context.Process):
    """A process with spawn semantics, forked by the run's zygote or exec'd by the Go core.

    A subclass of stdlib's multiprocessing.Process, so that code checking the
    type accepts it; only how the child is created (_Popen) differs.
    """

    # None: stdlib's child bootstrap would otherwise force the method in
    # stdlib's table of contexts; the child takes dragon_mp's below.
    _start_method = None
    # The method of the context that made it (None: the default context's).
    _method = None

    def __init__(self, group=None, target=None, name=None, args=(), kwargs={},
                 *, daemon=None, policy=None):
        super().__init__(group, target, name, args, kwargs, daemon=daemon)
        # Where it runs in a multi-node run (dragon_mp.placement); None: the default.
        self.policy = policy

    @property
    def exit_reason(self):
        """Why the process ended, as a sentence; None while it runs (or
        before start) and when it exited with code 0.

        A child on another node, or started by a Popen that does not track
        reasons, gets one from its exit code alone ("killed by SIGKILL
        (sender unknown)").
        """
        code = self.exitcode            # polls, as stdlib's exitcode does
        if not code:
            return None
        reason = getattr(self._popen, 'exit_reason', None)
        return reason if reason is not None else _status_text(code)

    @staticmethod
    def _Popen(process_obj):
        from . import context, placement
        # The child reports the start method its parent chose, as stdlib's do.
        process_obj._child_method = (process_obj._method
                                     or context._default_context.get_start_method())
        if getattr(process_obj._target, '__module__', None) == 'concurrent.futures.process':
            from . import _executor     # a ProcessPoolExecutor's worker: its deaths say why
            _executor.install()

        def start_on(node):
            if node != placement.this_node():
                from .popen_remote import Popen as RemotePopen
                return RemotePopen(process_obj, node)
            from .popen_dragon import Popen
            return Popen(process_obj)
        return placement.start(getattr(process_obj, 'policy', None), start_on)

    def _bootstrap(self, parent_sentinel=None):
        from . import context
        method = self.__dict__.pop('_child_method', None)
        if method is not None:
            context._force_start_method(method)
        return super()._bootstrap(parent_sentinel)


def _status_text(code):
    """What an exit code alone says (gocore/events' words, without a sender)."""
    if code >= 0:
        return 'exited %d' % code
    try:
        name = _signal.Signals(-code).name
    except ValueError:
        name = 'signal %d' % -code
    return 'killed by %s (sender unknown)' % name


# The Process of each concrete context (dragon_mp.context): the same start,
# another name, as stdlib's ForkProcess and SpawnProcess.

class DragonProcess(Process):
    _method = 'dragon'


class SpawnProcess(Process):
    _method = 'spawn'


class ForkProcess(Process):
    _method = 'fork'


class ForkServerProcess(Process):
    _method = 'forkserver'


from ._stdlib import complete as _complete    # noqa: E402  (last: every stdlib name not defined above)
_complete(globals(), 'process')

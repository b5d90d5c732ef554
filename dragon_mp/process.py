"""Process objects: stdlib's BaseProcess, started the dragon_mp way.

The process bookkeeping (current_process, parent_process, active_children,
names, authkeys, exit codes, the bootstrap in the child) is stdlib's own, so a
dragon_mp.Process behaves like a multiprocessing.Process in every detail that
does not depend on how the child is created; only `_Popen` differs.

A child is a fork of the run's zygote (a process that never loads the Go
runtime) or, failing that, a fresh interpreter; both have spawn semantics
(see popen_dragon). In a zygote child `os.getppid()` is the zygote's pid;
`parent_process()` is the process that started it, as under stdlib.
"""

from multiprocessing.process import (            # noqa: F401  re-exported
    AuthenticationString, BaseProcess, active_children, current_process,
    parent_process)

__all__ = ['BaseProcess', 'Process', 'current_process', 'active_children',
           'parent_process']


class Process(BaseProcess):
    """A process with spawn semantics, forked by the run's zygote or exec'd by the Go core."""

    # None: stdlib's child bootstrap would otherwise look the method name up
    # in its own table of contexts, which has no 'dragon'.
    _start_method = None

    def __init__(self, group=None, target=None, name=None, args=(), kwargs={},
                 *, daemon=None, policy=None):
        super().__init__(group, target, name, args, kwargs, daemon=daemon)
        # Where it runs in a multi-node run (dragon_mp.placement); None: the default.
        self.policy = policy

    @staticmethod
    def _Popen(process_obj):
        from . import placement

        def start_on(node):
            if node != placement.this_node():
                from .popen_remote import Popen as RemotePopen
                return RemotePopen(process_obj, node)
            from .popen_dragon import Popen
            return Popen(process_obj)
        return placement.start(getattr(process_obj, 'policy', None), start_on)

"""dragon_mp.native: beyond the multiprocessing API, after DragonHPC's dragon.native.

ProcessGroup starts and manages groups of processes, Python callables or
executables, from ProcessTemplates: restart, walltime, SIGTERM-then-SIGKILL
stop, per-member pipes. See docs/native.md.
"""

from ..placement import Policy
from .process import DEVNULL, PIPE, STDOUT, ProcessTemplate
from .process_group import Pipes, ProcessGroup, State

__all__ = ['ProcessGroup', 'ProcessTemplate', 'Policy', 'State', 'Pipes', 'PIPE', 'STDOUT', 'DEVNULL']

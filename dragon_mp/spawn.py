"""The child side of starting a process, with spawn semantics.

dragon_mp never forks a process that may have loaded the Go runtime: a child
is a fork of the run's zygote (which never loads it, see dragon_mp.zygote)
or a new interpreter, and either way it starts like stdlib's 'spawn': the parent
pickles preparation data (sys.path, the main module, ...) and the Process
object into a pipe; the child re-creates the main module as __mp_main__ and
runs the process. stdlib's own spawn machinery does the preparation, so
functions defined in the main script, `if __name__ == "__main__"` guards and
`python -m` programs behave as under stdlib spawn.
"""

import os
import sys
from multiprocessing import spawn as _stdlib_spawn
from multiprocessing.spawn import (          # noqa: F401  re-exported
    freeze_support, get_executable, get_preparation_data, import_main_path,
    is_forking, prepare, set_executable)

__all__ = ['spawn_main', 'get_command_line', 'get_executable', 'set_executable',
           'freeze_support', 'get_preparation_data', 'prepare']


def get_command_line(data_fd, tracker_fd=None):
    """argv of a child that reads its process from data_fd."""
    from . import _runtime
    return _runtime.python_command(
        f'from dragon_mp.spawn import spawn_main; spawn_main({data_fd}, {tracker_fd})',
        '--multiprocessing-fork')


def spawn_main(data_fd, tracker_fd=None):
    """Run the process the parent wrote to data_fd; never returns."""
    from multiprocessing import resource_tracker
    resource_tracker._resource_tracker._fd = tracker_fd
    # The data pipe also serves as the parent sentinel: its write end stays
    # open in the parent for as long as the parent holds the Popen.
    parent_sentinel = os.dup(data_fd)
    exitcode = _stdlib_spawn._main(data_fd, parent_sentinel)
    sys.exit(exitcode)

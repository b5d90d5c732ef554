"""The child side of starting a process, with spawn semantics.

dragon_mp never forks a process that may have loaded the Go runtime: a child
is a fork of the run's zygote (which never loads it, see dragon_mp.zygote)
or a new interpreter, and either way it starts like stdlib's 'spawn': the parent
pickles preparation data (sys.path, the main module, ...) and the Process
object into a pipe; the child re-creates the main module as __mp_main__ and
runs the process. prepare() takes stdlib's steps in stdlib's order and uses
its helpers, so functions defined in the main script, `if __name__ ==
"__main__"` guards and `python -m` programs behave as under stdlib spawn.

Two shortcuts, each measured in a fresh fork of the zygote, where every page
a step touches for the first time is copied (~2 us a page):
- the pipe carries the two pickles behind their lengths and is read with
  os.read, not through a file object;
- a plain main script whose code the zygote compiled (same bytes, no path
  hook) is run as runpy.run_path runs it, without runpy's general machinery.
"""

import os
import pickle
import struct
import sys
import types
from multiprocessing import process, util
from multiprocessing import spawn as _stdlib_spawn
from multiprocessing.spawn import (          # noqa: F401  re-exported
    freeze_support, get_executable, get_preparation_data, import_main_path,
    is_forking, set_executable)

__all__ = ['_main', 'spawn_main', 'get_command_line', 'get_executable', 'set_executable',
           'freeze_support', 'get_preparation_data', 'prepare', 'import_main_path']


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
    exitcode = _main(data_fd, parent_sentinel)
    # Python <= 3.12 ran multiprocessing's exit finalizers (util._exit_function) at the end of the
    # process's _bootstrap; 3.13 leaves them to atexit, where they come after weakref.finalize's hook
    # (registered later, so run first), which drops the run's objects before a Connection's finalizer
    # could drop its handle. Run them here, as before (once: a second call does nothing).
    util._exit_function()
    sys.exit(exitcode)


# The data pipe carries DATA_HEAD (the two lengths), the pickled preparation
# data, then the pickled Process (popen_dragon writes it): read with os.read,
# without a file object (~0.1 ms of a start in a fresh fork).
DATA_HEAD = struct.Struct('<II')


def pack_data(preparation, process_obj):
    """The data pipe's content from the two pickles."""
    return DATA_HEAD.pack(len(preparation), len(process_obj)) + preparation + process_obj


def _read_data(fd):
    """(preparation data, process) pickles from the data pipe; EOFError if it ends early."""
    buf = b''
    while len(buf) < DATA_HEAD.size:
        buf += _read_some(fd, 1 << 16)
    n_prep, n_proc = DATA_HEAD.unpack_from(buf)
    end = DATA_HEAD.size + n_prep + n_proc
    if len(buf) < end:             # large arguments: read the rest in place
        data = bytearray(end)
        data[:len(buf)] = buf
        view, got = memoryview(data), len(buf)
        while got < end:
            n = os.readv(fd, [view[got:]])
            if n == 0:
                raise EOFError('dragon_mp: the parent closed the data pipe early')
            got += n
        buf = data
    view = memoryview(buf)
    return view[DATA_HEAD.size:DATA_HEAD.size + n_prep], view[DATA_HEAD.size + n_prep:end]


def _read_some(fd, n):
    chunk = os.read(fd, n)
    if not chunk:
        raise EOFError('dragon_mp: the parent closed the data pipe early')
    return chunk


def _main(fd, parent_sentinel):
    """stdlib spawn._main, reading the data pipe as written by pack_data."""
    try:
        preparation, process_obj = _read_data(fd)
    finally:
        os.close(fd)
    process.current_process()._inheriting = True
    try:
        preparation_data = pickle.loads(preparation)
        prepare(preparation_data)
        self = pickle.loads(process_obj)
    finally:
        del process.current_process()._inheriting
    zygote_child = sys.modules.get('dragon_mp.zygote_child')
    if zygote_child is not None:
        zygote_child.end_setup()     # a Ctrl-C of the preparation is raised here, if not already
    return self._bootstrap(parent_sentinel)


def prepare(data):
    """stdlib spawn.prepare: get this process ready to unpickle the process object.

    The same steps; only a main script whose code the zygote compiled is
    re-created without runpy's general machinery (see _run_main_code).
    """
    current = process.current_process()
    if 'name' in data:
        current.name = data['name']
    if 'authkey' in data:
        current.authkey = data['authkey']
    if 'log_to_stderr' in data and data['log_to_stderr']:
        util.log_to_stderr()
    if 'log_level' in data:
        util.get_logger().setLevel(data['log_level'])
    if 'sys_path' in data:
        sys.path = data['sys_path']
    if 'sys_argv' in data:
        sys.argv = data['sys_argv']
    if 'dir' in data:
        os.chdir(data['dir'])
    if 'orig_dir' in data:
        process.ORIGINAL_DIR = data['orig_dir']
    if 'start_method' in data:
        _stdlib_spawn.set_start_method(data['start_method'], force=True)
    if 'init_main_from_name' in data:
        _stdlib_spawn._fixup_main_from_name(data['init_main_from_name'])
    elif 'init_main_from_path' in data:
        _fixup_main_from_path(data['init_main_from_path'])


# Set in a child of the zygote: main script path -> its code object, or None
# when the zygote has none for the file's current bytes (dragon_mp.zygote).
main_code = None


def _fixup_main_from_path(main_path):
    """stdlib spawn._fixup_main_from_path; a main script with code at hand runs as runpy would."""
    code = main_code(main_path) if main_code is not None else None
    current_main = sys.modules['__main__']
    if (code is None or 'ipython' in main_path     # maybe ipython's: stdlib's own check decides
            or getattr(current_main, '__file__', None) == main_path):
        return _stdlib_spawn._fixup_main_from_path(main_path)
    _stdlib_spawn.old_main_modules.append(current_main)
    main_module = types.ModuleType('__mp_main__')
    main_module.__dict__.update(_run_main_code(code, main_path))
    sys.modules['__main__'] = sys.modules['__mp_main__'] = main_module


def _run_main_code(code, path, name='__mp_main__'):
    """runpy.run_path(path, run_name=name) for a plain script (no path hook takes it) whose code is given.

    As runpy does: the code runs in a temporary module registered under
    name, with sys.argv[0] set to path, and a copy of its globals is returned.
    """
    temp = types.ModuleType(name)
    run_globals = temp.__dict__
    run_globals.update(__name__=name, __file__=path, __cached__=None, __doc__=None,
                       __loader__=None, __package__='', __spec__=None)
    missing = object()
    saved_module = sys.modules.get(name, missing)
    saved_argv0 = sys.argv[0]
    sys.modules[name] = temp
    sys.argv[0] = path
    try:
        exec(code, run_globals)
    finally:
        sys.argv[0] = saved_argv0
        if saved_module is missing:
            del sys.modules[name]
        else:
            sys.modules[name] = saved_module
    return run_globals.copy()


# stdlib's spawn re-exports its default context's start-method functions.
from .context import _default_context as _ctx    # noqa: E402
get_start_method = _ctx.get_start_method
set_start_method = _ctx.set_start_method

from ._stdlib import complete as _complete    # noqa: E402  (last: every stdlib name not defined above)
_complete(globals(), 'spawn')

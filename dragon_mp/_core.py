"""Access to the Go core, loaded lazily, at most once per process.

The Go runtime cannot survive fork(): a forked child of a process that has
loaded it hangs as soon as it needs the Go scheduler. So the library is
loaded on first use, never at import (a fork server or a stdlib 'fork' pool
made before first use stays safe), and a forked child that touches it gets a
RuntimeError naming the fix instead of a hang.

Two doors lead into the same library: the gopy module (control plane:
create, attach, start processes) and the C extension dragon_mp._fastpath
(data plane: send, recv, acquire; dragon_mp._fast loads it), which calls the
library's //export functions with pointers instead of copying through the
Go heap. Both are required: a build without the C extension fails to load
with an ImportError naming it. Errors from Go carry a code; `raise_for` maps
a code to the exception stdlib multiprocessing raises in the same situation.
"""

import errno
import os
import queue
import threading

__all__ = ['gocore', 'fast', 'library_path', 'raise_for', 'GoError']

_lock = threading.Lock()
_gocore = None      # the gopy module, once loaded
_fp = None          # dragon_mp._fastpath, initialized on the same .so
_so_path = None     # the path of that .so
_loaded_pid = None
_forked_child = False


class GoError(RuntimeError):
    """An error from the Go core with no closer Python equivalent."""


def _mark_forked():
    global _forked_child
    if _loaded_pid is not None:
        _forked_child = True


os.register_at_fork(after_in_child=_mark_forked)

FORK_MESSAGE = (
    "dragon_mp: this process was forked from one that had already loaded the "
    "dragon_mp runtime (pid %s); the Go runtime does not survive fork(). "
    "Start processes with dragon_mp.Process or a stdlib 'spawn' context, or "
    "fork before the first use of dragon_mp.")


def _check_fork():
    if _forked_child:
        raise RuntimeError(FORK_MESSAGE % _loaded_pid)


def gocore():
    """The gopy-bound module (pyext), loading the library on first call."""
    _check_fork()
    if _gocore is None:
        _load()
    return _gocore


def fast():
    """The data plane: dragon_mp._fastpath, calling into the same library."""
    _check_fork()
    if _gocore is None:
        _load()
    return _fp


def library_path():
    """The path of the loaded library (the gopy extension's .so), loading it on first call."""
    _check_fork()
    if _gocore is None:
        _load()
    return _so_path


# Address space Go's runtime reserves when it starts (page-allocator
# summaries, heap arenas, thread stacks): measured on amd64, Go 1.26, it
# aborts the process (uncatchably) below ~0.8 GiB free.
GO_ADDRESS_SPACE = 832 << 20


def address_space():
    """(RLIMIT_AS soft limit, bytes this process may still map under it), or None: no limit."""
    import resource
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open('/proc/self/statm') as f:
            size = int(f.read().split()[0]) * os.sysconf('SC_PAGE_SIZE')
    except (OSError, ValueError):
        size = 0
    return soft, soft - size


def _check_address_space():
    # Under a low RLIMIT_AS Go's start would kill the process with "fatal
    # error: failed to reserve page summary memory": say so first, catchably.
    limited = address_space()
    if limited is not None and limited[1] < GO_ADDRESS_SPACE:
        soft, left = limited
        raise OSError(errno.ENOMEM,
                      f'dragon_mp: its Go runtime needs about {GO_ADDRESS_SPACE >> 20} MiB of '
                      f'address space, and this process may map {max(left, 0) >> 20} MiB more '
                      f'(RLIMIT_AS, ulimit -v: {soft >> 20} MiB); raise the limit')


def _load():
    global _gocore, _fp, _so_path, _loaded_pid
    with _lock:
        if _gocore is not None:
            return
        _check_address_space()
        from ._gobind import load
        module, so_path = load()
        from . import _fast
        _fp = _fast.load(so_path)
        _loaded_pid = os.getpid()
        _so_path = so_path
        _gocore = module


# Codes shared with pyext/codes.go: //export functions return them negated,
# gopy errors carry them as an "E<code>:" prefix.
TIMEOUT, FULL, CLOSED, BADHANDLE, NOSPACE, TOOLARGE, INVALID, \
    TOOMANYRELEASES, NOTOWNER, OSERR, INTERNAL, NODELOST = range(1, 13)


def last_error():
    """The message of this thread's last error from an //export function."""
    return fast().last_error()


def raise_for(code, what=''):
    """Raise the Python exception for a negative result code of an //export function."""
    code = -code
    if code == TIMEOUT:
        raise queue.Empty
    if code == FULL:
        raise queue.Full
    raise _exception(code, last_error() or what)


def _exception(code, message):
    if code == CLOSED:
        return ValueError(message or 'closed')
    if code == BADHANDLE:
        return ValueError(message or 'invalid or destroyed dragon_mp object')
    if code == NOSPACE:
        return OSError(errno.ENOSPC, message)
    if code == TOOLARGE:
        return MemoryError(message)
    if code == INVALID:
        return ValueError(message)
    if code == TOOMANYRELEASES:
        return ValueError('semaphore or lock released too many times')
    if code == NOTOWNER:
        return AssertionError('attempt to release recursive lock not owned by thread')
    if code == OSERR:
        return OSError(message)
    if code == NODELOST:
        return ConnectionError(message)
    return GoError(message)


def call(fn, *args):
    """Call a gopy function, mapping its "E<code>: message" errors."""
    try:
        return fn(*args)
    except RuntimeError as e:
        text = str(e)
        if text.startswith('E') and ':' in text:
            head, _, message = text.partition(':')
            if head[1:].isdigit():
                code = int(head[1:])
                if code == TIMEOUT:
                    raise TimeoutError(message.strip()) from None
                raise _exception(code, message.strip()) from None
        raise GoError(text) from None

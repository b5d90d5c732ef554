"""The optional C fast path into the Go core: dragon_mp._fastpath (pyext/fastpath.c).

`load(so_path)` returns the extension module, initialized and configured, or
None when it is not built (dragon_mp._core's ctypes path is the fallback) or
is disabled with DRAGON_MP_FASTPATH=0. Call it once the gopy library is
loaded, with the path dragon_mp._gobind.load() returned: the extension
resolves the Go functions in that already-loaded library and never loads a
second copy (a second Go runtime).

`sem_word(addr)`, `rlock_word(addr)` and `event_word(addr)` are what
`_fastpath.Sem/RLock/Event(addr, word)` need to run the steps that never wait
as atomics in C, without calling Go. Go computes them (pyext/fast_exports.go),
so Python and C know nothing of the object header's layout.
"""

import os
import pickle

__all__ = ['load', 'sem_word', 'rlock_word', 'event_word']

_module = None


def load(so_path):
    """The dragon_mp._fastpath module, ready for calls into the library at so_path, or None."""
    global _module
    if os.environ.get('DRAGON_MP_FASTPATH', '1') == '0':
        return None
    try:
        from . import _fastpath
    except ImportError:
        return None
    try:
        _fastpath.init(so_path)
    except (OSError, AttributeError):
        return None
    from . import _core
    from .reduction import dumps_parts
    _fastpath.configure(_core.raise_for, dumps_parts, pickle.loads)
    _module = _fastpath
    return _fastpath


_ptr_fns = {}       # dmp_*_ptr name -> _fastpath.bind() callable (per loaded module)


def _word(fn_name, validate, addr):
    fp = _module
    if fp is None:
        return 0
    fn = _ptr_fns.get(fn_name)
    if fn is None:
        try:
            fn = _ptr_fns[fn_name] = fp.bind(fn_name, 'u')
        except AttributeError:      # an older Go library: everything through Go
            return 0
    word = fn(addr)
    if word <= 0:
        from . import _core
        _core.call(getattr(_core.gocore(), validate), addr)   # raises what stdlib would
        return 0
    return word


def sem_word(addr):
    """Where the shmsync.Semaphore at addr lives in this process; 0: let Go do everything.

    Not a live semaphore of this node's pool: the exception stdlib would raise
    (ValueError). _fastpath.Sem asks Go again before it trusts the word.
    """
    return _word('dmp_sem_ptr', 'SemValue', addr)


def rlock_word(addr):
    """Where the shmsync.RecursiveLock at addr lives in this process; 0: let Go do everything."""
    return _word('dmp_rlock_ptr', 'RLockCount', addr)


def event_word(addr):
    """Where the shmsync.Event at addr lives in this process; 0: let Go do everything."""
    return _word('dmp_event_ptr', 'EventIsSet', addr)

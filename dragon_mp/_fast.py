"""The data plane's door into the Go core: dragon_mp._fastpath (pyext/fastpath.c).

`load(so_path)` returns the extension module, initialized and configured.
dragon_mp._core calls it once the gopy library is loaded, with the path
dragon_mp._gobind.load() returned: the extension resolves the Go functions in
that already-loaded library and never loads a second copy (a second Go
runtime). The extension is part of every build (setup.py fails without it);
a source tree where it was not compiled gets an ImportError naming it.

`bound(name, signature)` is an //export function without a method of its own
in the extension (dmp_cond_wait, dmp_raw_read...), through the extension's
generic binder, made once per process.

`sem_word(addr)`, `rlock_word(addr)` and `event_word(addr)` are what
`_fastpath.Sem/RLock/Event(addr, word)` need to run the steps that never wait
as atomics in C, without calling Go. Go computes them (pyext/fast_exports.go),
so Python and C know nothing of the object header's layout.
"""

import pickle

__all__ = ['load', 'bound', 'sem_word', 'rlock_word', 'event_word']

_bound = {}         # //export name -> its _fastpath.bind() callable


def load(so_path):
    """The dragon_mp._fastpath module, ready for calls into the library at so_path."""
    try:
        from . import _fastpath
    except ImportError as e:
        raise ImportError(
            'dragon_mp._fastpath (pyext/fastpath.c), the C extension every send, recv and '
            'lock goes through, is not built or does not load here: reinstall dragon_mp '
            '(pip install .), or run `python setup.py build_ext --inplace` in a source tree; '
            f'building it needs a C compiler and the Python headers ({e})',
            name='dragon_mp._fastpath') from e
    _fastpath.init(so_path)
    from . import _core
    from .reduction import dumps_parts
    _fastpath.configure(_core.raise_for, dumps_parts, pickle.loads)
    return _fastpath


def bound(name, signature, timed_out=0, nogil=False):
    """_fastpath.bind(name, signature, timed_out, nogil) for the //export
    function name, made on first use: a call into Go that the extension has
    no method for. Every argument is a 64-bit integer (a buffer is passed by
    its address)."""
    fn = _bound.get(name)
    if fn is None:
        from . import _core
        fn = _bound[name] = _core.fast().bind(name, signature, timed_out, nogil)
    return fn


def _word(fn_name, validate, addr):
    word = bound(fn_name, 'u')(addr)
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

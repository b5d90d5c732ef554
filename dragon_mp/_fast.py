"""The optional C fast path into the Go core: dragon_mp._fastpath (pyext/fastpath.c).

`load(so_path)` returns the extension module, initialized and configured, or
None when it is not built (dragon_mp._core's ctypes path is the fallback) or
is disabled with DRAGON_MP_FASTPATH=0. Call it once the gopy library is
loaded, with the path dragon_mp._gobind.load() returned: the extension
resolves the Go functions in that already-loaded library and never loads a
second copy (a second Go runtime).

`sem_word(addr)` is what `_fastpath.Sem(addr, word)` needs to run
uncontended acquire/release as atomics in C, without calling Go.
"""

import os
import pickle

__all__ = ['load', 'sem_word']

# Layout facts of gocore/runtime (objects.go, address.go) that sem_word relies on.
OBJ_HEADER = 24                 # headerSize: the payload follows the object header
OFFSET_BITS = 48                # an address: node << 48 | offset in that node's pool

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
    from .reduction import ForkingPickler
    _fastpath.configure(_core.raise_for, ForkingPickler.dumps, pickle.loads)
    _module = _fastpath
    return _fastpath


def sem_word(addr):
    """Where the shmsync.Semaphore at addr lives in this process; 0: let Go do everything.

    Go validates addr first (a live semaphore of this node's pool, else the
    exception stdlib would raise); _fastpath.Sem checks the object header again.
    """
    fp = _module
    if fp is None or addr >> OFFSET_BITS:
        return 0
    from . import _core
    _core.call(_core.gocore().SemValue, addr)
    base = fp.pool_base()
    if not base:
        return 0
    return base + (addr & ((1 << OFFSET_BITS) - 1)) + OBJ_HEADER

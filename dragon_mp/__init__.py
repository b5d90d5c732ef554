"""dragon_mp: Python's multiprocessing API on a Go core.

    import dragon_mp as multiprocessing

Importing this package loads nothing but Python: the Go runtime is loaded on
first use (a Queue, a Lock, a Process start), so a process may still fork
safely before that.
"""

from . import context

__version__ = '0.1.0'

# Like stdlib: every public method of the default context is a module function.
__all__ = [x for x in dir(context._default_context) if not x.startswith('_')]
globals().update((name, getattr(context._default_context, name)) for name in __all__)

SUBDEBUG = 5
SUBWARNING = 25

from ._stdlib import complete as _complete    # noqa: E402  (every other name of stdlib's package)
_complete(globals(), '')

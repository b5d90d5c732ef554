"""dragon_mp: Python's multiprocessing API on a Go core.

    import dragon_mp as multiprocessing

Importing this package loads nothing but Python: the Go runtime is loaded on
first use (a Queue, a Lock, a Process start), so a process may still fork
safely before that. In a program whose main script imports installed
packages (numpy, pandas, ...), it also starts the run's zygote, which
imports them while the program does, for its children (dragon_mp.zygote).
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

from .zygote_prestart import prestart as _prestart    # noqa: E402
_prestart()

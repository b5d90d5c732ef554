"""Name parity with stdlib: every name a module of stdlib's multiprocessing
has, its dragon_mp counterpart has too.

A dragon_mp module defines what dragon_mp does its own way; every other name
of the stdlib module (helpers, constants, private state such as
process._children, the modules it imports) is then stdlib's own object, put
there by complete() at the module's end. Code written against stdlib, and
CPython's own tests, reach for such names (`util.abstract_sockets_supported`,
`process._cleanup`); because dragon_mp's process bookkeeping, finalizers and
pickling are stdlib's, the stdlib object is the right one, not a copy.

A module reference is the exception: where stdlib's module names a sibling
(`multiprocessing.queues.connection`), the dragon_mp module names dragon_mp's
sibling, so code that goes through it reaches dragon_mp's objects.
"""

import importlib
import sys
import types

__all__ = ['complete']

_PKG = 'multiprocessing.'


def complete(namespace, name):
    """Fill `namespace` (a dragon_mp module's globals) with the names of
    stdlib's multiprocessing.<name> that it does not define; return stdlib's
    module. name '' is the package itself, whose submodules are not imported
    here: they become attributes when imported, as stdlib's do."""
    stdlib = importlib.import_module(_PKG + name if name else _PKG[:-1])
    for key, value in vars(stdlib).items():
        if key in namespace or (key.startswith('__') and key.endswith('__')):
            continue
        if isinstance(value, types.ModuleType) and value.__name__.startswith(_PKG):
            if not name:
                continue
            value = _counterpart(value.__name__[len(_PKG):]) or value
        namespace[key] = value
    return stdlib


def _counterpart(sub):
    # A sibling being imported right now (an import cycle) is in sys.modules
    # already, partly initialised: its names arrive when its import ends.
    full = 'dragon_mp.' + sub
    if full in sys.modules:
        return sys.modules[full]
    try:
        return importlib.import_module(full)
    except ImportError:
        return None

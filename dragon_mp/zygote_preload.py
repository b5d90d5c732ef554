"""Installed packages in the zygote: a template imports them, then serves.

A program's children re-run its main module (spawn semantics), and that
module imports its libraries: numpy and pandas take 0.3-1 s to import, in
every child. A *template* imports them once instead, and later children are
forked from it, so they find them in sys.modules (their pages shared with
the template). dragon_mp.zygote (the requester side) decides what is asked
for: the installed third-party modules the requester has imported (those of
the interpreter's site directories), those its main script imports (read
from the script's source at `import dragon_mp`, so the import starts while
the program's own runs), plus those forced by DRAGON_MP_ZYGOTE_PRELOAD,
minus the forbidden ones. This module is the zygote's side: whether a
module is safe to import into a process that will fork, and the template's
life.

Safe to fork after import
-------------------------
A zygote must stay able to fork: single-threaded, no Go runtime. An import
may break that for good (an import cannot be undone), so the zygote never
imports a package itself: it forks a *template*, a copy that imports them
one by one and checks after each:

- dragon_mp's Go runtime is not loaded (a module that makes a Queue at
  import, for instance);
- no Python thread was started (threading.active_count() == 1): a thread
  holding a lock at fork leaves the lock held in every child;
- no other OS thread is left once the process has forked: native thread
  pools started at load (OpenBLAS, numpy's BLAS, starts one per core) stop
  in their pthread_atfork handlers, which every fork runs, and start again
  in a child that computes; that is how stdlib's 'fork' start method has
  always run numpy programs. The template forks a child that exits at once
  and counts its own threads again. Threads that survive a fork (a library
  that does not handle it) make the module unsafe.

A module that fails to import is skipped. An unsafe one ends that template:
the zygote skips the module's whole top-level package and forks a new
template for the rest (the modules before it are imported again there).
So does a template that dies or takes more than TEMPLATE_TIMEOUT seconds
(an import that hangs). When every module is in, the template tells the
zygote, which stops accepting requests; the template then accepts them on
the same listening socket (inherited by the fork), with the zygote's C loop
and spares of its own. The zygote stays, idle, as the template's parent:
it still reaps the children it started before, and if the template dies it
listens again (cold starts, correct). A template that is asked for more
packages makes its own template the same way, up to MAX_TEMPLATES in a
chain; past that, children import what is left themselves.

Why a template and not the zygote itself after a probe (the way this
worked before): the probe's import was thrown away and the zygote imported
everything a second time, while starts waited (numpy+pandas: ~0.9 s instead
of ~0.45). Why not the program itself (fork semantics): it has loaded Go by
the time it starts a process, and a child would inherit everything the
program did to its modules. Why not the user's own modules: they change
between runs and may do anything at import; installed packages are what
forkserver's preload is used for.

When: a request that brings packages the zygote has not seen is held (its
connection and descriptors stay with the zygote and go to the template by
the fork), the zygote stops accepting, and the template serves that
request first once its imports are done; requests that arrive meanwhile
wait in the socket's backlog. A child forked cold would import the same
packages itself, as long as the template takes, so waiting costs the first
start nothing it would not pay anyway, and every later start is warm. When
the requester's logger is at DEBUG (log_to_stderr(logging.DEBUG)) the
zygote writes to stderr which modules it skipped and why.

What a child forked warm inherits
---------------------------------
The modules' state as computed at import in the template, as with stdlib's
'fork' and 'forkserver' (preload) methods, and unlike 'spawn'. The one
difference a program would see most, the global random generator of
numpy, is re-seeded from the OS in every child after the fork (as
Python's own `random` is), so children do not draw the same numbers.
"""

import os
import sys

__all__ = []   # internal

TEMPLATE_TIMEOUT = 60     # seconds for a template to import its packages
MAX_TEMPLATES = 3         # templates in a chain (each asked for more packages makes the next)


def threads():
    """This process's OS threads."""
    return len(os.listdir('/proc/self/task'))


def quiesce():
    """Fork a child that exits at once: libraries stop their thread pools in
    their fork handlers (OpenBLAS), so this process is single-threaded again
    if only such threads were running."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)   # 3.12+: fork with threads
        pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def unsafe_reason():
    """Why this process may not fork now (None: it may)."""
    from . import _core
    if _core._loaded_pid is not None:
        return "it loads dragon_mp's Go runtime"
    threading = sys.modules.get('threading')
    if threading is not None and threading.active_count() > 1:
        names = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
        return f'it starts Python threads ({", ".join(names)})'
    if threads() > 1:
        quiesce()
        n = threads()
        if n > 1:
            return f'it leaves {n - 1} native threads running across a fork'
    return None


def _top(name):
    return name.partition('.')[0]


def import_checked(names, report):
    """In a template: import names in order, report(kind, name, why) after each
    ('ok', 'fail' or 'unsafe'). Stops at the first unsafe one: False."""
    import importlib
    for name in names:
        try:
            importlib.import_module(name)
        except BaseException as e:
            report('fail', name, f'{type(e).__name__}: {e}')
            continue
        why = unsafe_reason()
        if why is not None:
            report('unsafe', name, why)
            return False
        report('ok', name, '')
    _reseed_at_fork()
    return True


def encode(kind, name, why=''):
    """One report of a template to its zygote: a datagram (SOCK_SEQPACKET)."""
    return f'{kind}\t{name}\t{why}'.replace('\n', ' ').encode()[:4000]


def decode(data):
    kind, _, rest = data.decode(errors='replace').partition('\t')
    name, _, why = rest.partition('\t')
    return kind, name, why


class Preloader:
    """A zygote's record of packages: which to import, which were skipped (and why)."""

    def __init__(self):
        self.skipped = {}      # top-level name (or a failed module's own name) -> reason
        self.reported = set()  # skipped names already written to a debug log

    def todo(self, names):
        """The names a template still has to import."""
        return [n for n in names
                if n not in sys.modules and _top(n) not in self.skipped and n not in self.skipped]

    def skip(self, name, why, debug, top=True):
        key = _top(name) if top else name
        if key not in self.skipped:
            self.skipped[key] = why
        self.report(debug)

    def failed(self, name, why, debug):
        """name did not import (only name is skipped, not its package)."""
        self.skip(name, f'its import failed ({why})', debug, top=False)

    def report(self, debug):
        """Name the skipped modules on stderr, once each, when debug."""
        if not debug:
            return
        for key, why in self.skipped.items():
            if key not in self.reported:
                self.reported.add(key)
                _log(f'not preloading {key}: {why}', True)


def _log(text, show):
    if show:
        try:
            sys.stderr.write(f'[DEBUG/dragon_mp zygote] {text}\n')
        except Exception:
            pass


_reseeding = False


def _reseed_at_fork():
    """numpy's global generator, seeded at import: seed it again in every child."""
    global _reseeding
    if _reseeding or 'numpy.random' not in sys.modules:
        return
    _reseeding = True
    os.register_at_fork(after_in_child=_reseed_numpy)


def _reseed_numpy():
    try:
        sys.modules['numpy.random'].seed()
    except Exception:
        pass

"""Installed packages in the zygote: import once, check, then fork warm children.

A program's children re-run its main module (spawn semantics), and that
module imports its libraries: numpy and pandas take 0.3-1 s to import, in
every child. The zygote imports them once instead, before it forks the
child, so children find them in sys.modules (their pages shared with the
zygote). dragon_mp.zygote (the requester side) decides what is asked for:
the installed third-party modules the requester has imported (those of the
interpreter's site directories), plus those forced by
DRAGON_MP_ZYGOTE_PRELOAD, minus the forbidden ones. This module
is the zygote's side: whether a module is safe to import into a process
that will fork, and importing the safe ones.

Safe to fork after import
-------------------------
The zygote must stay able to fork: single-threaded, no Go runtime. An
import may break that for good (an import cannot be undone), so a new set
of modules is first imported by a *probe*, a child forked from the zygote
for that purpose, which checks after each module:

- dragon_mp's Go runtime is not loaded (a module that makes a Queue at
  import, for instance);
- no Python thread was started (threading.active_count() == 1): a thread
  holding a lock at fork leaves the lock held in every child;
- no other OS thread is left once the process has forked: native thread
  pools started at load (OpenBLAS, numpy's BLAS, starts one per core) stop
  in their pthread_atfork handlers, which every fork runs, and start again
  in a child that computes; that is how stdlib's 'fork' start method has
  always run numpy programs. The probe forks a child that exits at once and
  counts its own threads again. Threads that survive a fork (a library
  that does not handle it) make the module unsafe.

A module that fails to import is skipped; an unsafe one ends the probe
and is skipped with every module of its top-level package; the modules
after it are probed again by a new probe. The probe reports one line per
module on a pipe. Then the zygote imports the safe ones itself, in the
requester's import order, forks once if an import left native threads
(they stop as in the probe), and checks the same things again: if the
zygote's own imports still broke them, it refuses to fork from then on and
requesters fall back to exec (correct, slow), as for any zygote that is
not single-threaded.

When: right after the zygote has served the request that brought the
modules (its child starts at once and imports them itself, as every child
did before; the probe runs beside it on another core). Requests that
arrive meanwhile wait for the probe and the zygote's own import (~2x the
import time, once per run: numpy+pandas ~0.9 s on the 2-vCPU VMs we
measure on), then are forked warm, as are all later ones. When the
requester's logger is at DEBUG (log_to_stderr(logging.DEBUG)) the zygote
writes to stderr which modules it skipped and why.

What a child forked warm inherits
---------------------------------
The modules' state as computed at import in the zygote, as with stdlib's
'fork' and 'forkserver' (preload) methods, and unlike 'spawn'. The one
difference a program would see most, the global random generator of
numpy, is re-seeded from the OS in every child after the fork (as
Python's own `random` is), so children do not draw the same numbers.
"""

import os
import select
import sys
import time

__all__ = []   # internal

PROBE_TIMEOUT = 300.0    # seconds for a probe to import one set of modules


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


def _probe(names, deadline):
    """Import names in a forked child, checking after each. Returns
    (ok, failed, unsafe): names that imported and left the process safe,
    names that failed to import, and (name, reason) of the first unsafe one
    or None. Names after an unsafe one are not probed."""
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            import signal
            from . import zygote_server
            zygote_server._set_pdeathsig(signal.SIGKILL)    # not past the zygote
            import importlib
            for name in names:
                try:
                    importlib.import_module(name)
                except BaseException as e:
                    os.write(w, f'fail\t{name}\t{type(e).__name__}: {e}'.replace('\n', ' ')
                             .encode()[:4000] + b'\n')
                    continue
                why = unsafe_reason()
                if why is not None:
                    os.write(w, f'unsafe\t{name}\t{why}\n'.encode())
                    break
                os.write(w, f'ok\t{name}\n'.encode())
        finally:
            os._exit(0)
    os.close(w)
    ok, failed, unsafe = [], [], None
    buf = b''
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(pid, 9)
                pending = names[len(ok) + len(failed)]
                unsafe = (pending, f'its import took more than {PROBE_TIMEOUT:.0f} s')
                break
            chunk = os.read(r, 65536)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b'\n')
            for line in lines:
                kind, name, *why = line.decode(errors='replace').split('\t')
                if kind == 'ok':
                    ok.append(name)
                elif kind == 'fail':
                    failed.append((name, why[0] if why else ''))
                else:
                    unsafe = (name, why[0] if why else '')
        if unsafe is None and len(ok) + len(failed) < len(names):
            # The probe died without a word (a crash in an import).
            pending = names[len(ok) + len(failed)]
            unsafe = (pending, 'the process importing it died')
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    return ok, failed, unsafe


class Preloader:
    """The zygote's record of packages: imported, skipped (and why)."""

    def __init__(self):
        self.skipped = {}      # top-level name -> reason

    def load(self, names, debug=False):
        """Import the safe ones of names into this process (the zygote)."""
        todo = [n for n in names if n not in sys.modules and _top(n) not in self.skipped]
        deadline = time.monotonic() + PROBE_TIMEOUT
        safe = []
        while todo:
            ok, failed, unsafe = _probe(todo, deadline)
            safe += ok
            for name, why in failed:
                self._skip(name, f'its import failed ({why})', debug, top=False)
            if unsafe is None:
                break
            name, why = unsafe
            self._skip(name, why, debug)
            done = set(ok) | {n for n, _ in failed}
            todo = [n for n in todo if n not in done and _top(n) not in self.skipped]
        import importlib
        for name in safe:
            if name in sys.modules or _top(name) in self.skipped:
                continue
            try:
                importlib.import_module(name)
            except BaseException as e:
                self._skip(name, f'its import failed in the zygote ({type(e).__name__})', debug)
        why = unsafe_reason()
        if why is not None:
            _log(f'the zygote cannot fork any more: {why}; starts fall back to exec', True)
        _reseed_at_fork()

    def _skip(self, name, why, debug, top=True):
        key = _top(name) if top else name
        if key not in self.skipped:
            self.skipped[key] = why
            _log(f'not preloading {key}: {why}', debug)


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

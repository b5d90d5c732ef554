"""The run's zygote started at `import dragon_mp`, while the program imports its packages.

A program's first start would wait for a template's import of its packages
(numpy+pandas: ~0.45 s on the 2-vCPU VMs we measure on), which the program
itself has just done. So `import dragon_mp`, in a program's first process
(no run yet, or the launcher's with no zygote in its environment, no Go
loaded), reads its main script's import lines; if they name installed
packages it starts the run's zygote at once, with those packages for a
template to import (dragon_mp.zygote_preload) while the program imports
them too, on another core. Nothing waits at import: the first start takes
the zygote on (its ready line; dragon_mp.zygote.address) and finds the
template ready or nearly so.

- Started as every zygote is (dragon_mp.zygote.spawn): the spawned process
  forks the zygote and exits; it is reaped at the first start, the first
  use of the runtime, or exit, so no zombie stays. Only before Go is
  loaded: a run that exists already has its zygote started at its first
  start.
- The run id is fixed then (dragon_mp._runtime.planned_runid): the run the
  program creates later takes it, and the zygote carries it. A fork of the
  program forgets both (its run is its own).
- What it costs: a program that imports dragon_mp after its packages gains
  less (the template starts when the program's import is done); one that
  never starts a process holds a zygote and a template on an idle core until
  it exits. PEP 8 puts `import dragon_mp as multiprocessing`, a standard-
  library name, before third-party imports. DRAGON_MP_ZYGOTE_PRELOAD='-*'
  turns it off with the rest of the automatic preload.
"""

import os
import signal
import sys

from . import zygote

__all__ = []   # internal

early = None             # _Early: a zygote started at import, not yet taken on
_prestarted = False
MAX_SCAN = 1 << 20       # bytes of the main script read for its imports


class _Early:
    def __init__(self, runid, name, pid, ready_r):
        self.runid, self.name, self.pid, self.ready_r = runid, name, pid, ready_r


def prestart():
    """At `import dragon_mp`: start the run's zygote, with a template importing
    the main script's installed packages, if this is a program's first
    process and its script names some (the module's docstring)."""
    global _prestarted, early
    if _prestarted:
        return
    _prestarted = True
    if os.environ.get(zygote.ENV_ZYGOTE):
        return
    from . import _core, _runtime
    if _core._loaded_pid is not None or _runtime._run is not None:
        return
    names = main_script_packages()
    if not names:
        return
    runid = _runtime.planned_runid()
    name = f'dragon_mp.zygote.{runid}.{os.getpid()}-0'
    try:
        pid, ready_r = zygote.spawn(runid, name, names)
    except OSError:
        return
    early = _Early(runid, name, pid, ready_r)
    zygote.prestarted = finish
    import atexit
    atexit.register(reap, True)
    os.register_at_fork(after_in_child=_forget)   # the zygote is not a fork's


def _forget():
    global early
    mine, early = early, None
    zygote.prestarted = None
    if mine is not None:
        os.close(mine.ready_r)


def finish(runid):
    """Take on the zygote started at import (zygote.address, at the first start), if it is
    this run's; else let it go (its ready line finds the pipe closed, and it exits)."""
    global early
    mine, early = early, None
    zygote.prestarted = None
    if mine.runid == runid and zygote.owned_pid() is None:
        try:
            zygote.take(runid, mine.name, mine.pid, mine.ready_r)
        except OSError:
            pass                       # the start goes on as without it
        return
    os.close(mine.ready_r)
    if mine.pid:
        try:
            os.kill(mine.pid, signal.SIGKILL)
            os.waitpid(mine.pid, 0)
        except (OSError, ChildProcessError):
            pass


def reap(wait=False):
    """Reap the process spawned at import once it has exited (it exits at once:
    no zombie is left whether or not the program ever starts a process)."""
    mine = early
    if mine is not None and mine.pid:
        try:
            if os.waitpid(mine.pid, 0 if wait else os.WNOHANG)[0]:
                mine.pid = 0
        except ChildProcessError:
            mine.pid = 0


def main_script_packages():
    """The installed packages the main script imports, in source order
    (DRAGON_MP_ZYGOTE_PRELOAD's forced ones first, its forbidden ones left out).

    A line scan, not ast (whose import and parse cost ~2-10 ms here): lines
    that start with `import` or `from`, outside triple-quoted strings. A
    name it finds wrongly is harmless: only top-level names installed in the
    site directories are kept, and a template skips what fails to import.
    """
    main = sys.modules.get('__main__')
    path = getattr(main, '__file__', None)
    if not isinstance(path, str) or not path.endswith('.py'):
        return []
    path = os.path.abspath(path)
    sites = zygote._site_dirs()
    if path.startswith(sites) or path.startswith(os.path.dirname(zygote.__file__) + os.sep):
        return []      # a tool's entry point (python -m pytest, dragon_mp's own), not a program
    force, forbid = zygote.preload_setting()
    if '*' in forbid:
        return list(force)
    try:
        with open(path, 'rb') as f:
            text = f.read(MAX_SCAN).decode('utf-8', 'replace')
    except OSError:
        return list(force)
    found = list(force)
    stdlib = sys.stdlib_module_names
    checked = {}
    quoted = None
    for line in text.splitlines():
        if quoted is not None:
            if line.count(quoted) % 2:
                quoted = None
            continue
        s = line.strip()
        for q in ('"""', "'''"):
            if s.count(q) % 2:
                quoted = q
        if quoted is not None or not s.startswith(('import ', 'from ')):
            continue
        if s.startswith('from '):
            mod = s[5:].split(' import', 1)[0].strip()
            names = [] if mod.startswith('.') else [mod]
        else:
            names = [part.strip().split(' as ')[0].strip()
                     for part in s[7:].split('#')[0].split(';')[0].split(',')]
        for name in names:
            if not name or not name.replace('.', '').replace('_', '').isalnum():
                continue
            top = name.partition('.')[0]
            if top in stdlib or top in zygote.NO_PRELOAD or top == 'dragon_mp' or name in found \
                    or zygote._forbidden(name, forbid):
                continue
            if top not in checked:
                checked[top] = _installed(top, sites)
            if checked[top]:
                found.append(name)
    return found


def _installed(top, sites):
    """Whether the top-level module top is installed in the site directories."""
    mod = sys.modules.get(top)
    if mod is not None:
        path = getattr(getattr(mod, '__spec__', None), 'origin', None)
        return isinstance(path, str) and path.startswith(sites)
    import importlib.machinery
    try:
        spec = importlib.machinery.PathFinder.find_spec(top)
    except Exception:
        return False
    path = getattr(spec, 'origin', None)
    if not isinstance(path, str):
        locations = getattr(spec, 'submodule_search_locations', None) or []
        path = next(iter(locations), None)
    return isinstance(path, str) and path.startswith(sites)

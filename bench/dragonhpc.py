"""DragonHPC (the `dragonhpc` package from PyPI) as an extra column of
bench/run.py (--with-dragonhpc).

DragonHPC and dragon_mp both install a command named `dragon`, so DragonHPC
lives in its own venv, created once and cached (default
~/.cache/dragon_mp-bench/dragonhpc-venv), and is always called by absolute
path, with the venv's bin first on PATH for everything it starts.  A workload
runs as

    <venv>/bin/dragon -s bench/run.py --one NAME --impl dragonhpc [--quick]

(-s: DragonHPC's single-node launcher, needed where Slurm commands exist);
run.py then does `import dragon` and `multiprocessing.set_start_method("dragon")`
under its main guard and runs the same workload code as for the other columns.

What a run leaves: the single-node launcher runs DragonHPC's local and global
services as threads of itself, so every process of a run descends from it and
inherits run.py's DRAGON_MP_BENCH_TAG (reaped as the other columns' are).  Its
managed-memory pools are /dev/shm files named D + D<uid[-3:]><pid[-3:]> +
suffix (the launcher's pid), e.g. DD0776def0D/M, inf, log; DragonHPC removes
them at a clean exit.  leftover_shm() finds the ones a run made and did not
remove.  Its own `dragon-cleanup` tool is not used: it removes every /dev/shm
file of the user and kills every dragon process.

No side effects at import time.
"""

import fcntl
import os
import re
import shutil
import subprocess
import sys

from large_workloads import cache_dir

VERSION = "0.15.0"
PACKAGES = ["numpy"]           # besides dragonhpc itself: the numpy workloads
MARKER = ".dragon_mp-bench"   # written last into a venv this module made
SHM_DIR = "/dev/shm"
DEFAULT_VENV = os.path.join(cache_dir(), "dragonhpc-venv")


def paths(venv):
    b = os.path.join(venv, "bin")
    return os.path.join(b, "python"), os.path.join(b, "dragon")


def _installed_version(venv):
    py, dragon = paths(venv)
    if not (os.access(py, os.X_OK) and os.access(dragon, os.X_OK)):
        return None
    try:
        r = subprocess.run([py, "-c", "import importlib.metadata as m, dragon, numpy; "
                            "print(m.version('dragonhpc'))"],
                           capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def ensure_venv(venv=None, wheel=None, log=print):
    """A venv with dragonhpc==VERSION and numpy at venv, created if absent.
    wheel: install DragonHPC from that file instead of PyPI (it must be
    VERSION).  Returns (path of its bin/dragon, None) or (None, reason)."""
    venv = os.path.abspath(os.path.expanduser(venv or DEFAULT_VENV))
    py, dragon = paths(venv)
    if _installed_version(venv) == VERSION:
        return dragon, None
    os.makedirs(os.path.dirname(venv), exist_ok=True)
    with open(venv + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # another runner may be creating it
        have = _installed_version(venv)
        if have == VERSION:
            return dragon, None
        if os.path.exists(venv):
            if not os.path.exists(os.path.join(venv, MARKER)):
                return None, ("%s exists but is not a venv with dragonhpc %s and numpy "
                              "(found %s); remove it or pass another --dragonhpc-venv" % (
                                  venv, VERSION, have or "none"))
            shutil.rmtree(venv)             # one of ours, from another version
        log("  setting up DragonHPC %s in %s (once; pip install %s) ..." % (
            VERSION, venv, wheel or "dragonhpc==" + VERSION))
        try:
            steps = [[sys.executable, "-m", "venv", venv],
                     [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                      wheel or "dragonhpc==" + VERSION] + PACKAGES]
            for cmd in steps:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
                if r.returncode != 0:
                    raise RuntimeError("%s failed: %s" % (" ".join(cmd[:4]),
                                                          (r.stderr or r.stdout).strip()[-300:]))
            with open(os.path.join(venv, MARKER), "w") as f:
                f.write("dragonhpc %s\n" % VERSION)
            have = _installed_version(venv)
            if have != VERSION:
                raise RuntimeError("installed, but dragonhpc %s does not import with numpy "
                                   "(found %s)" % (VERSION, have))
        except Exception as e:  # leave nothing half made
            shutil.rmtree(venv, ignore_errors=True)
            return None, "DragonHPC venv setup failed: %s" % e
    return dragon, None


def command(dragon, script, args):
    """How run.py's --one runs under DragonHPC."""
    return [dragon, "-s", script] + list(args)


def environ(env, dragon):
    """env for a DragonHPC run: its venv's bin first on PATH (its helpers,
    and `python`, resolve to the venv), no venv/home of another Python."""
    env = dict(env)
    for k in ("PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(k, None)
    bindir = os.path.dirname(dragon)
    env["PATH"] = os.pathsep.join([bindir] + [p for p in env.get("PATH", "").split(os.pathsep)
                                              if p and p != bindir])
    env["VIRTUAL_ENV"] = os.path.dirname(bindir)
    return env


def shm_snapshot():
    try:
        return set(os.listdir(SHM_DIR))
    except OSError:
        return set()


POOL_FILE = re.compile(r"^DD\d{1,3}\d{1,3}")


def leftover_shm(before, launcher_pid, mapped=()):
    """(ours, unsure): /dev/shm files that appeared since `before` and are
    still there; ours = named after this run's launcher pid or mapped by a
    process of the run (safe to remove), unsure = other new files named like
    DragonHPC pools (reported, not removed: could be another program's)."""
    prefix = "DD%s%s" % (str(os.getuid())[-3:], str(launcher_pid)[-3:])
    mapped = {os.path.basename(m) for m in mapped if os.path.dirname(m) == SHM_DIR}
    ours, unsure = [], []
    for f in sorted(shm_snapshot() - before):
        path = os.path.join(SHM_DIR, f)
        if f.startswith(prefix) or f in mapped:
            ours.append(path)
        elif POOL_FILE.match(f):
            unsure.append(path)
    return ours, unsure


def version_info():
    """impl_info for the --one process under DragonHPC."""
    info = {}
    try:
        import importlib.metadata
        info["version"] = importlib.metadata.version("dragonhpc")
    except Exception:
        pass
    try:
        import dragon
        info["file"] = getattr(dragon, "__file__", None)
    except Exception:
        pass
    return info

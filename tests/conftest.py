"""Every test must leave no shared memory and no child process behind.

The pytest process itself becomes the head of a dragon_mp run the first time
a test uses dragon_mp; after each test the run is shut down (as a program's
exit would), and the test fails if a segment of ours is left in /dev/shm or a
child process of pytest is still alive.
"""

import contextlib
import os
import subprocess
import sys
import time

import pytest

SHM_DIR = os.environ.get('DRAGON_MP_SHM_DIR', '/dev/shm')


def our_segments():
    try:
        return {n for n in os.listdir(SHM_DIR) if n.startswith('dragon_mp.')}
    except FileNotFoundError:
        return set()


def child_pids(parent=None):
    """Live (non-zombie) children of `parent` (default: this process).

    stdlib's resource tracker is not counted: like under stdlib, one lives as
    long as the process that started it.
    """
    parent = parent or os.getpid()
    from multiprocessing import resource_tracker
    tracker = resource_tracker._resource_tracker._pid
    pids = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat', 'rb') as f:
                fields = f.read().rsplit(b')', 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] != b'Z' and int(entry) != tracker:
            pids.append(int(entry))
    return pids


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


_HOG = """
import time
while True:
    end = time.perf_counter() + %r
    while time.perf_counter() < end:
        pass
    time.sleep(%r)
"""


@contextlib.contextmanager
def cpu_hogs(n=2, load=0.6):
    """`n` processes that each keep a core busy `load` of every 100 ms while
    the block runs: for tests whose races must happen on a loaded machine."""
    hogs = [subprocess.Popen([sys.executable, '-c', _HOG % (0.1 * load, 0.1 * (1 - load))])
            for _ in range(n)]
    try:
        yield
    finally:
        for h in hogs:
            h.kill()
            h.wait()


def leaked(before):
    """Segments that appeared since `before` and belong to no live run.

    A run whose head still lives is somebody else's (another test session on
    this machine); a run of this process, or one whose head is gone, must not
    leave anything behind once its reaper had time to act.
    """
    from dragon_mp.cleanup import head_alive
    me = f'dragon_mp.r{os.getpid()}-'
    return sorted(n for n in our_segments() - before
                  if n.startswith(me) or not head_alive(n.split('.')[1]))


@pytest.fixture(autouse=True)
def no_leaks():
    before = our_segments()
    yield
    import dragon_mp._runtime as rt
    rt.shutdown()
    assert wait_until(lambda: not leaked(before)), f'shared memory left behind: {leaked(before)}'
    assert wait_until(lambda: not child_pids()), \
        f'child processes left behind: {child_pids()}'


def clean_env(**extra):
    """An environment for a fresh program: not part of this process's run."""
    env = {k: v for k, v in os.environ.items() if k != 'DRAGON_MP_RUN'}
    env.update(extra)
    return env


@pytest.fixture
def zygote_enabled(monkeypatch):
    """For tests about the zygote: on even if the session runs with DRAGON_MP_ZYGOTE=0."""
    if os.environ.get('DRAGON_MP_ZYGOTE') == '0':
        monkeypatch.delenv('DRAGON_MP_ZYGOTE')


def require_module(name):
    """Import a third-party module the tests pin (tests/requirements-thirdparty.txt, which
    `make test` installs), or skip the test without it; under CI a missing one fails."""
    try:
        return __import__(name)
    except ImportError:
        if os.environ.get('CI'):
            raise
        pytest.skip(f'{name} is not installed (pip install -r tests/requirements-thirdparty.txt)')


# --- the two implementations ----------------------------------------------------------------
#
# `mp` runs a test twice: against stdlib multiprocessing's 'spawn' context (the reference every
# assertion is checked against; dragon_mp's processes have spawn semantics) and against dragon_mp's
# context. Test modules that define their own `mp` fixture keep theirs (a module's fixture wins).
# Targets of child processes must be module-level functions: spawned children import the test
# module by name.

STDLIB, DRAGON = 'stdlib-spawn', 'dragon_mp'


@pytest.fixture(params=[STDLIB, DRAGON])
def mp(request):
    if request.param == STDLIB:
        import multiprocessing
        return multiprocessing.get_context('spawn')
    import dragon_mp
    return dragon_mp.get_context()


def is_dragon(ctx):
    """True for dragon_mp's context, False for a stdlib one."""
    import dragon_mp.context
    return isinstance(ctx, dragon_mp.context.BaseContext)


def package_of(ctx):
    """'dragon_mp' or 'multiprocessing': what a child imports to talk to its own implementation."""
    return DRAGON if is_dragon(ctx) else 'multiprocessing'


def submodule(ctx, name):
    """The implementation's `queues`, `synchronize`, ... module."""
    import importlib
    return importlib.import_module(f'{package_of(ctx)}.{name}')


# --- dragon_mp._fastpath (test_fastpath*.py) ------------------------------------------------

INLINE = 256                    # gocore/channel DefaultInline: a Queue's inline payload size


def so_path():
    """The loaded Go library's path (what _fastpath.init takes), loading it."""
    from dragon_mp import _core
    _core.gocore()
    import dragon_mp._gobind as g
    return sys.modules[g.EXTENSION].__file__


@pytest.fixture
def fp():
    """dragon_mp._fastpath, initialized on the run's library."""
    from dragon_mp import _fast
    module = _fast.load(so_path())
    yield module
    # no_leaks shuts the run down after each test: no Sem may touch its pool after that.
    module.invalidate()


def chan(q):
    """The address of a Queue's channel."""
    return q._channel._addr


def payload(size):
    """size bytes of a recognizable pattern."""
    return bytes(range(256)) * (size // 256) + b'x' * (size % 256)

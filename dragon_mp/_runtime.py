"""The per-program runtime: which run this process belongs to, and its end.

A *run* is one program's set of processes and shared memory. The first
process that needs the runtime without finding DRAGON_MP_RUN in its
environment (or the `dragon` launcher) is the run's head: it creates the
run's pool and starts the reaper, a pure-Python watchdog that cleans the run
up if the head dies without doing so itself. Every other process attaches to
the run named in its environment.

The head tears the run down at exit, after stdlib's exit handler has joined
non-daemonic children and terminated daemonic ones, so a program's children
finish before their shared memory disappears.
"""

import atexit
import errno
import json
import os
import sys
import threading

from . import _core

__all__ = []   # internal: nothing for `from ... import *`

ENV_RUN = 'DRAGON_MP_RUN'
# Multi-node runs (set by the launcher for every process of the run):
ENV_NODE = 'DRAGON_MP_NODE'      # this process's node index (absent: 0)
ENV_NODES = 'DRAGON_MP_NODES'    # the nodes' host names, comma-separated, by index
ENV_NCPUS = 'DRAGON_MP_NCPUS'    # the nodes' CPU counts, comma-separated, by index
SEGMENT_PREFIX = 'dragon_mp.'
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_lock = threading.RLock()
_run = None          # the _Run this process belongs to, once known
_generation = 0      # bumped at each shutdown: objects of an ended run are inert


class _Run:
    def __init__(self, runid, head):
        self.runid = runid
        self.head = head
        self.generation = _generation
        self.reaper = None          # proc handle of the reaper (head only)
        self.reaper_pipe = None     # write end the reaper watches (head only)


def process_start_time(pid):
    """Field 22 of /proc/<pid>/stat: tells a live pid from a reused one."""
    with open(f'/proc/{pid}/stat', 'rb') as f:
        stat = f.read()
    # The command name may contain spaces and parentheses: split after the last ')'.
    return int(stat[stat.rindex(b')') + 2:].split()[19])


def new_runid():
    pid = os.getpid()
    # os.urandom, not secrets: secrets imports hashlib, whose OpenSSL costs ~3 MB of RSS per process.
    return f'r{pid}-{process_start_time(pid)}-{os.urandom(3).hex()}'


_planned = None      # the id the next run created here will have, once asked for (planned_runid)


def planned_runid():
    """The id of this process's run before it exists: DRAGON_MP_RUN, or the id the
    run this process creates will take (the zygote started at import carries it)."""
    global _planned
    runid = os.environ.get(ENV_RUN)
    if runid:
        return runid
    if _planned is None:
        _planned = new_runid()
        os.register_at_fork(after_in_child=_forget_planned)   # a fork's run is its own
    return _planned


def _forget_planned():
    global _planned
    _planned = None


def parse_runid(runid):
    """(head pid, head start time) encoded in a run id, or None."""
    try:
        pid, start, _ = runid[1:].split('-')
        return int(pid), int(start)
    except ValueError:
        return None


def _stdlib_spawn_executable():
    from multiprocessing import spawn
    return spawn.get_executable()


def python_command(code, *args):
    """argv that runs `code` in a fresh interpreter that can import dragon_mp."""
    from multiprocessing import spawn, util
    prog = f'import sys; sys.path.insert(0, {PACKAGE_PARENT!r}); {code}'
    return [os.fsdecode(spawn.get_executable()), *util._args_from_interpreter_flags(),
            '-c', prog, *args]


def current():
    """This process's run, creating or attaching to it on first use."""
    run = _run
    if run is not None:
        return run
    with _lock:
        if _run is None:
            _track_outside_runs()
            from . import zygote_prestart
            zygote_prestart.reap()      # the process spawned at import, gone by now
            runid = os.environ.get(ENV_RUN)
            if runid:
                _attach(runid)
            else:
                _create()
        return _run


def runid():
    return current().runid


def generation():
    return current().generation


def alive(gen):
    """True while the run that had generation `gen` is still this process's run."""
    run = _run
    return run is not None and run.generation == gen


def _attach(runid):
    global _run
    _core.call(_core.gocore().RuntimeAttach, runid)
    _run = _Run(runid, head=False)
    if multi_node():
        atexit.register(sync_remote)
        from . import _node_sockets
        _node_sockets.install()


def _create(runid=None, node=0):
    global _run, _planned
    runid = runid or _planned or new_runid()
    _planned = None
    reserve = _reserve_setting()
    gocore = _core.gocore()
    if not reserve:
        reserve = _default_reserve()
    try:
        _core.call(gocore.RuntimeCreateNode, runid, node, reserve)
    except OSError as e:
        if 'mmap' not in str(e):
            raise
        raise OSError(e.errno or errno.ENOMEM,
                      f'{e}: the pool reserves {(reserve or DEFAULT_RESERVE) >> 20} MiB of address '
                      f'space twice (set DRAGON_MP_POOL_RESERVE to a smaller size in bytes, or '
                      f'raise ulimit -v)') from None
    run = _Run(runid, head=True)
    try:
        _start_reaper(run)
    except BaseException:
        _core.call(_core.gocore().RuntimeShutdown, True)
        raise
    os.environ[ENV_RUN] = runid
    _run = run
    atexit.register(shutdown, True)
    if multi_node():
        atexit.register(sync_remote)      # runs first: atexit is last in, first out
        from . import _node_sockets
        _node_sockets.install()


DEFAULT_RESERVE = 64 << 30      # gocore/pool.DefaultReserve
MIN_RESERVE = 16 << 20
MAX_RESERVE = 2 << 40           # gocore/runtime.MaxOffset / 2: what addresses can name


def _reserve_setting():
    """DRAGON_MP_POOL_RESERVE in bytes (0 or unset: the default); ValueError
    naming it when it is not a reservation the pool can have."""
    text = os.environ.get('DRAGON_MP_POOL_RESERVE', '').strip()
    if not text:
        return 0
    try:
        reserve = int(text)
    except ValueError:
        reserve = -1
    if reserve != 0 and not 1 << 20 <= reserve <= MAX_RESERVE:
        raise ValueError(f'DRAGON_MP_POOL_RESERVE={text!r}: the pool reservation is a size in bytes '
                         f'from {1 << 20} (1 MiB) to {MAX_RESERVE} (2 TiB), or 0 for the default')
    return reserve


def _default_reserve():
    """The pool's reservation when DRAGON_MP_POOL_RESERVE is not set: 0 (the
    Go default, 64 GiB of address space, committed as used) unless RLIMIT_AS
    (ulimit -v) is set; then the largest power of two such that its two
    mappings take at most half of what is left, in this process and in the
    children that attach (they inherit the limit and map it too)."""
    limited = _core.address_space()
    if limited is None:
        return 0
    soft, left = limited
    reserve = DEFAULT_RESERVE
    while reserve > MIN_RESERVE and 4 * reserve > left:
        reserve >>= 1
    if 4 * reserve > left:
        raise OSError(errno.ENOMEM,
                      f'dragon_mp: too little address space for the shared pool under RLIMIT_AS '
                      f'(ulimit -v: {soft >> 20} MiB, {max(left, 0) >> 20} MiB left after the Go '
                      f'runtime); raise the limit, or set DRAGON_MP_POOL_RESERVE (bytes)')
    return reserve


def _start_reaper(run):
    r, w = os.pipe()
    try:
        # Run as a bare script (-I -S: no site, no package import): the
        # reaper only needs os/signal, and it stays small for the whole run.
        from . import reaper
        argv = [os.fsdecode(_stdlib_spawn_executable()), '-I', '-S',
                os.path.abspath(reaper.__file__), run.runid, '3']
        env = {k: v for k, v in os.environ.items() if k != ENV_RUN}
        spec = {'argv': argv, 'env': [f'{k}={v}' for k, v in env.items()],
                'files': [-1, -1, 2, r], 'new_session': True}
        run.reaper = start_process(spec)
    except BaseException:
        os.close(w)
        raise
    finally:
        os.close(r)
    run.reaper_pipe = w


def start_process(spec):
    """Start a process from a spec dict (see pyext ProcStart); returns a handle."""
    spec.setdefault('dir', os.getcwd())
    return _core.call(_core.gocore().ProcStart, json.dumps(spec))


def resource_tracker_fd():
    """stdlib's resource tracker (started outside the run if need be)."""
    from multiprocessing import resource_tracker
    _track_outside_runs()
    return resource_tracker.getfd()


def _track_outside_runs():
    """Make stdlib's resource tracker start without the run id, whoever starts it.

    The tracker outlives runs (it ends with the last process holding its
    pipe), so it must not carry the run id that teardown kills by. It may be
    started by dragon_mp (to pass it to a child) or by stdlib itself (the
    first SharedMemory, SharedMemoryManager, ... of a program whose run has
    begun), so its ensure_running is wrapped, once per process.
    """
    from multiprocessing import resource_tracker
    tracker = resource_tracker._resource_tracker
    if getattr(tracker, '_dragon_mp_outside_runs', False):
        return
    ensure = tracker.ensure_running

    def ensure_running():
        with _lock:
            saved = os.environ.pop(ENV_RUN, None)
            try:
                return ensure()
            finally:
                if saved is not None:
                    os.environ[ENV_RUN] = saved

    tracker.ensure_running = ensure_running           # register/unregister/getfd
    resource_tracker.ensure_running = ensure_running  # the module-level alias
    tracker._dragon_mp_outside_runs = True


def child_environment():
    """The environment of a process started inside this run."""
    env = dict(os.environ)
    env[ENV_RUN] = runid()
    return [f'{k}={v}' for k, v in env.items()]


def multi_node():
    """Whether this process is part of a run of several nodes."""
    return ',' in os.environ.get(ENV_NODES, '')


def sync_remote():
    """Wait until every put this process posted to another node's objects is in
    place there (what a process put is delivered before its exit is seen, as
    stdlib's feeder threads are flushed at exit); report posts that failed."""
    run = _run
    if run is None:
        return
    try:
        _core.call(_core.gocore().RemoteSync, 0)
    except Exception as e:      # the node is lost, or a post failed: say so, as a feeder would
        try:
            print(f'dragon_mp: puts of process {os.getpid()} to another node failed: {e}',
                  file=sys.stderr, flush=True)
        except Exception:
            pass


def shutdown(at_exit=False):
    """End this process's part in the run; the head also ends the run.

    Safe to call more than once. After it, objects of the old run are inert
    and the next use of dragon_mp starts a new run.
    """
    global _run, _generation
    with _lock:
        run = _run
        if run is None:
            return
        if run.head:
            _finish_children(at_exit)
        _generation += 1
        _run = None
        atexit.unregister(shutdown)
        _core.fast().invalidate()       # no Sem touches the pool once it is unmapped
        gc = _core.gocore()
        zygote = sys.modules.get('dragon_mp.zygote')
        if zygote is not None:
            zygote.shutdown()           # after the children: it reports their ends
        if not run.head:
            _core.call(gc.RuntimeShutdown, False)
            return
        try:
            gc.KillRun(run.runid, 500)
        finally:
            _core.call(gc.RuntimeShutdown, True)
            os.environ.pop(ENV_RUN, None)
            if run.reaper_pipe is not None:
                os.close(run.reaper_pipe)
                try:
                    _core.call(gc.ProcWait, run.reaper, 5_000_000_000)
                except (TimeoutError, _core.GoError):
                    pass
                _core.call(gc.ProcRelease, run.reaper)


def _finish_children(at_exit):
    """Let children end before the memory they use goes away."""
    from multiprocessing import process, util
    if at_exit:
        # stdlib's own exit handler: runs finalizers (pools terminate their
        # workers), terminates daemonic children and joins the others.
        util._exit_function()
        return
    for p in process.active_children():
        if p.daemon:
            p.terminate()
    for p in process.active_children():
        p.join()


def node_index():
    """This process's node in a multi-node run (0 on one node)."""
    return int(os.environ.get(ENV_NODE, 0) or 0)


def node_names():
    """Host names of the run's nodes, by index ([this host] on one node)."""
    names = os.environ.get(ENV_NODES)
    if not names:
        import socket
        return [socket.gethostname()]
    return names.split(',')


def node_ip():
    """This node's address as the other nodes reach it (None on one node)."""
    import json
    peers = os.environ.get('DRAGON_MP_PEERS')
    if not peers:
        return None
    addr = json.loads(peers).get(str(node_index()))
    return addr['mesh'].rpartition(':')[0] if addr else None


def node_cpus():
    """CPU counts of the run's nodes, by index (None on one node)."""
    cpus = os.environ.get(ENV_NCPUS)
    return [int(c) for c in cpus.split(',')] if cpus else None


def reaper_pid():
    """Pid of this run's reaper (head only), or None."""
    run = _run
    if run is None or run.reaper is None:
        return None
    return _core.call(_core.gocore().ProcPid, run.reaper)


"""The zygote: a per-run process that starts dragon_mp processes by fork().

Starting a fresh interpreter costs ~60-90 ms (startup + imports). A process
that has loaded the Go runtime must never fork (bridge notes: the child
hangs), so dragon_mp cannot fork the requester itself. The zygote is a
process of the run that NEVER loads Go: it imports dragon_mp's and stdlib
multiprocessing's Python modules once, then forks one child per request.
The child installs the requester's descriptors, cwd and environment and runs
the same entry as an exec'd child (dragon_mp.spawn.spawn_main: stdlib spawn
preparation, `__main__` re-created as `__mp_main__`), so it behaves like a
child started by exec, minus the interpreter start.

This module is the design and the client side (what a requester runs);
dragon_mp.zygote_server is the zygote process itself, and
dragon_mp.zygote_child the steps by which its forked copies become the
requested processes and end.

Spares
------
While idle, the zygote forks one child ahead of time (a *spare*): it closes
the zygote's descriptors (one close_range; the zygote's objects stay
referenced, unused, so none closes a number the child reuses later), sets
PR_SET_PDEATHSIG and waits on a socketpair. While it waits it takes on the
context (cwd, stdout buffering) of the zygote's last request, which the
next request most likely shares, and does the first step of
Process._bootstrap: stdin becomes /dev/null (under a high descriptor
number, so that the request's descriptors land elsewhere; a request that
passes that number gets it, and _bootstrap opens /dev/null again). The
environment of a new context is taken on by the zygote itself, once, so
spares inherit it. A request is handed to the spare as received (the same
message and descriptors, SCM_RIGHTS, then the request's connection): it
installs the descriptors, re-applies the context only if it differs, and
runs. The fork, the child's first copy-on-write faults and the
context are off the request's path. The next spare is forked
when the zygote is idle again. A spare forked before the zygote imported
modules or compiled sources (its sys.modules or code cache have grown since)
is stale: it is discarded (it reads EOF and exits) and the request forks as
before. A spare holds nothing of a request until it gets one; it dies with
the zygote; the zygote reaps it like any child. DRAGON_MP_ZYGOTE_SPARE=0
(in the environment of the zygote's owner) turns spares off.

A spare costs ~17 MB of RSS (~8 MB not shared with the zygote). It is
dropped after DRAGON_MP_ZYGOTE_SPARE_IDLE seconds (default 2) without a
request, and the next one is forked after the next request: an idle program
holds none, a program that starts processes in bursts gets one from its
second start on.

The loop in C
-------------
Every fork of a spare shares the zygote's pages with a live child again, so
each page the zygote's loop writes afterwards is a copy-on-write fault
(~2 us on the 2-vCPU VMs we measure on). A loop in Python writes ~240 pages a
start (frames, refcounts of every object it uses). dragon_mp._zygote_loop
(pyext/zygote_loop.c, built by setup.py; the zygote does not start without
it) runs the steady-state cycle without creating a Python object: accept,
the uid check, the requester's pidfd, reading the request, handing it to the spare,
the reply, the reap and the exit status, forking the next spare (between
PyOS_BeforeFork and PyOS_AfterFork_*, as os.fork; only once the spare
handed the last request has taken it: a fork right after the hand-off held
up the woken spare). A spare it forked also takes its request in C
(take_request: receive, install the descriptors), ~0.15 ms less on the
start's path than the socket module's wrappers in a fresh fork. The loop
returns to Python for what needs Python: a request with a zygote part
(imports, compiles) or a new context, no fresh spare (Python forks for the
request and hands the child to C), and preloading while idle.

Measured when the Python loop was removed (2026-12-07, bench/start_cost.py's
dragon_mp run, C loop vs the former Python loop, interleaved, 3 rounds x 500
starts, medians, on the 2-vCPU VM while other jobs kept it busy, load ~1):
per start+join, the zygote took 0.92 vs 1.86 ms of CPU and 11 vs 237 minor
faults; all processes together 6.3 vs 7.2 ms of CPU; wall 4.29 vs 4.62 ms
(bench/run.py's process_start row, same conditions: 5.39 vs 5.45 ms, within
the noise of a busy machine). On few cores a start is bound by the CPU of
all its processes, so the zygote's ~0.9 ms is what the C loop saves a start.

Lifetime
--------
- Started lazily (popen_dragon, first Process start; the start waits until
  it listens, ~0.1 s) by the first process of a run that finds no zygote of
  its run in its environment: the run's head under `python prog.py`, the
  program under `dragon prog.py` (or at `import dragon_mp`:
  dragon_mp.zygote_prestart). spawn() starts it with posix_spawn (no fork of
  the requester, which may have loaded Go) in the run's environment
  (DRAGON_MP_RUN), so run teardown (KillRun, the reaper's scan of
  /proc/*/environ) finds it and its children; take() waits for it to listen.
  The spawned process takes a pidfd of its owner, forks the zygote and exits:
  the zygote is an orphan, so the owner's children are only the processes
  the program started (tests and users count them). The zygote exits when
  the owner's pidfd becomes readable (the owner ended, SIGKILL included),
  and the owner kills it at the end of its run (_runtime.shutdown).
  Its address (an abstract socket name carrying the run id) goes to every
  process started after it in DRAGON_MP_ZYGOTE, so nested children use it;
  DRAGON_MP_ZYGOTE=0 disables it (every start execs a new interpreter).
- Its children get PR_SET_PDEATHSIG=SIGKILL with the zygote as parent:
  nothing it started outlives it, and nothing outlives the run.
- The real parent of a child is the zygote (`os.getppid()` in the child is
  the zygote's pid); the logical parent is the requester:
  `multiprocessing.parent_process()` comes from the pickled Process and names
  the requester, exit statuses go to the requester, and the zygote watches
  each requester with a pidfd and SIGKILLs that requester's children when it
  exits (SIGKILL included). The delay is one turn of the zygote's event loop:
  at most the time to finish the event being served (a fork, ~1-2 ms; or
  the import of one module the zygote preloads while idle, or of the
  requester's stdlib modules, once).
- If the zygote dies, its children die with it (their exit code is reported
  as -SIGKILL); the owner starts a new one at its next start, other
  processes fall back to exec.

Protocol (SOCK_SEQPACKET on an abstract Unix socket; peer uid checked)
-------------------------------------------------------------------------
requester -> zygote : HEAD (magic, len(zygote part), len(context), number of
                      descriptors), then three parts, with the descriptors
                      (SCM_RIGHTS):
                      - zygote part: b'' or {'modules', 'sources'} (what the
                        zygote imports or compiles first; empty once sent);
                      - context: (cwd, environment as bytes, stdout is a tty),
                        byte-identical from one start to the next while the
                        requester's cwd and environment stay the same;
                      - start: START (data_fd, tracker_fd), then the
                        targets: one int32 per descriptor, its number in the
                        child (plain integers: a spare of the C loop reads
                        them in C).
                      The zygote reads only the head and the zygote part: the
                      child (or spare) reads the rest.
zygote -> requester : pickle {'pid': pid, 'server': pid of the zygote or template
                      that forked it} with the child's pidfd, or {'error': text}
child  -> requester : pickle {'exitcode': code} just before it exits (the zygote
                      passes the child the connection); it may come before the
                      zygote's reply
zygote -> requester : pickle {'exitcode': code} when the child has been reaped,
                      then the connection is closed

The requester waits for the pidfd, then takes the first exit status on the
connection: the child's own, without waiting for the zygote's turn to reap
it, or the zygote's for a child that could not report (killed by a signal,
os._exit in the target).

The connection is the requester's status channel; closing it early (a
released Popen) leaves the child running. Only requests of our own uid are
served.

What the zygote holds (so that children need not import or compile it)
----------------------------------------------------------------------
- Before it is ready: what every child needs (ESSENTIAL). While idle:
  dragon_mp's Python modules and its data-plane C extension (never the Go
  library) and stdlib multiprocessing's modules (PRELOAD).
- The environment of the last request's context (not its cwd: the zygote's
  imports must never find a user's files).
- Before serving a request: the standard-library modules the requester has
  imported (sys.stdlib_module_names, minus NO_PRELOAD).
- Installed packages, never in the zygote itself but in a *template* it
  forks (dragon_mp.zygote_preload: the checks, the template's life, what a
  child inherits): the third-party modules the requester has imported from
  the interpreter's site directories (where pip installs: numpy, pandas,
  ...), in its import order, plus the modules forced by
  DRAGON_MP_ZYGOTE_PRELOAD (or set_forkserver_preload), minus the
  forbidden ones. The request that brings new ones waits for the template,
  which then serves it and every later one (the zygote stops accepting).
  Never imported: the main module, the user's own modules (anything
  outside the site directories: they change between runs and may do
  anything at import), and dragon_mp's Go runtime. A zygote or template
  refuses to fork once it has more than one thread (the requester then
  falls back to exec).

Started at import
-----------------
In a program whose main script imports installed packages, `import
dragon_mp` starts the run's zygote at once, with a template importing them
while the program does: dragon_mp.zygote_prestart.
- Compiled code, never executed: the main script and the requester's modules
  that have no bytecode cache (PYTHONDONTWRITEBYTECODE, unwritable
  __pycache__). A child re-creating __mp_main__ or importing such a module
  gets the zygote's code object if the file's bytes are unchanged, and
  compiles it itself otherwise. For a main script that no path hook takes
  (a plain .py file), the failed lookup is cached too (runpy would try the
  hooks again in every child, zipimport reading the file: ~0.1 ms of a
  start), and such a script is re-run by dragon_mp.spawn._run_main_code
  (runpy.run_path's steps for a plain script) with the cached code.

Differences from an exec'd child (documented, deliberate)
----------------------------------------------------------
- `os.getppid()` is the zygote's pid (parent_process() is right).
- The hash seed (PYTHONHASHSEED) and state that modules imported into the
  zygote computed from the environment at import (the owner's environment
  when the zygote started, or the request environment it had taken on when
  it imported them) are the zygote's, as for stdlib 'fork' and 'forkserver'
  children; `os.environ` is the requester's, /proc/<pid>/environ shows the
  zygote's start environment (it carries the same DRAGON_MP_RUN).
- The child ends like a stdlib fork/forkserver child: after the process has
  run, atexit handlers run and stdio is flushed, then os._exit(): the
  interpreter's teardown of modules (finalizers of objects still referenced
  from modules at exit) is skipped. Tearing down every inherited module
  would copy the zygote's whole heap (~20-30 ms).
- The interpreter (sys.executable, its flags) is the zygote owner's.
- A child started by a spare has its /dev/null stdin on descriptor 64 (or
  the lowest free one above it), not on the lowest free one.
"""

import os
import pickle
import signal
import socket
import struct
import sys

__all__ = []   # internal: nothing for `from ... import *`

ENV_ZYGOTE = 'DRAGON_MP_ZYGOTE'
ENV_PRELOAD = 'DRAGON_MP_ZYGOTE_PRELOAD'
ENV_SPARE = 'DRAGON_MP_ZYGOTE_SPARE'   # '0': no child forked ahead (fork on each request)
ENV_SPARE_IDLE = 'DRAGON_MP_ZYGOTE_SPARE_IDLE'   # seconds without a request before the spare goes
SPARE_IDLE = 2.0
# Limits of a request, enforced by the zygote (pyext/zygote_loop.c mirrors them).
MAX_MSG = 1 << 20          # largest request (the environment dominates)
MAX_FDS = 256
HEAD = struct.Struct('<4sIII')   # magic, len(zygote part), len(context), number of fds
MAGIC = b'DZy2'
START = struct.Struct('<ii')     # the start part: data_fd, tracker_fd, then one int32 target per fd

def socket_address(name):
    """The abstract socket address for a zygote name."""
    return '\0' + name


# ---------------------------------------------------------------------------
# the client side (any process of the run)
# ---------------------------------------------------------------------------

START_TIMEOUT = 30.0

_owned = None            # _Owned: the zygote this process started, if any
prestarted = None        # dragon_mp.zygote_prestart.finish while a zygote started at import waits
_failed_runs = set()     # run ids whose zygote could not be started here


class _Owned:
    def __init__(self, runid, name, pid, pidfd):
        self.runid, self.name, self.pid, self.pidfd = runid, name, pid, pidfd


def enabled():
    return os.environ.get(ENV_ZYGOTE, '') != '0'


def address(runid):
    """The name of this run's zygote, starting one if this process has none; None: use exec."""
    value = os.environ.get(ENV_ZYGOTE, '')
    if value == '0':
        return None
    if value and _runid_of(value) == runid and (_owned is None or _owned.name != value):
        return value                   # inherited from the process that started us
    if prestarted is not None:
        prestarted(runid)                  # the zygote started at `import dragon_mp`
    owned = _owned
    if owned is not None and owned.runid == runid:
        if _alive(owned):
            return owned.name
        _release(owned)                # died: start another
    if runid in _failed_runs:
        return None
    try:
        owned = _start(runid)
    except Exception:
        _failed_runs.add(runid)
        return None
    return owned.name


def _runid_of(name):
    parts = name.split('.')
    return parts[2] if len(parts) == 4 and parts[:2] == ['dragon_mp', 'zygote'] else None


def readable(fd, timeout):
    """Wait until fd is readable (or hung up); timeout in seconds, None: forever.

    poll(), not select(): descriptors above FD_SETSIZE (1024) are fine.
    """
    import select
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000 + 0.999))))


def _alive(owned):
    return not readable(owned.pidfd, 0)


_starts = 0


def _start(runid):
    global _starts
    _starts += 1
    name = f'dragon_mp.zygote.{runid}.{os.getpid()}-{_starts}'
    spawned, ready_r = spawn(runid, name)
    return take(runid, name, spawned, ready_r)


def spawn(runid, name, packages=()):
    """Start the zygote name of run runid, without waiting: (pid, ready pipe).

    The process spawned (posix_spawn: no fork of this process, which may have
    loaded Go) takes a pidfd of this process, forks the zygote and exits; the
    zygote writes its pid on the pipe once it listens (take() reads it).
    packages: installed packages for a template to import at once
    (dragon_mp.zygote_prestart).
    """
    from . import _runtime
    argv = _runtime.python_command('from dragon_mp.zygote_server import main; main()',
                                   name, '3', str(os.getpid()), *([','.join(packages)] if packages else []))
    env = {k: v for k, v in os.environ.items() if k != ENV_ZYGOTE}
    env[_runtime.ENV_RUN] = runid
    r, w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        pid = os.posix_spawn(argv[0], argv, env, file_actions=[
            (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
            (os.POSIX_SPAWN_DUP2, w, 3)])
    except BaseException:
        os.close(r)
        raise
    finally:
        os.close(w)
        os.close(devnull)
    return pid, r


def take(runid, name, spawned, ready_r):
    """Wait for a zygote spawn() started to listen and make it this process's; OSError if it
    does not start. The spawned process is reaped either way."""
    global _owned
    pid = None
    try:
        line = b''
        while not line.endswith(b'\n'):
            chunk = os.read(ready_r, 64) if readable(ready_r, START_TIMEOUT) else b''
            if not chunk:
                raise OSError('dragon_mp: the zygote did not start')
            line += chunk
        pid = int(line)
        owned = _Owned(runid, name, pid, os.pidfd_open(pid))
    except BaseException:
        for victim in (pid, spawned):
            if victim:
                try:
                    os.kill(victim, signal.SIGKILL)   # a zygote's template and children die with it
                except OSError:
                    pass
        raise
    finally:
        os.close(ready_r)
        if spawned:                       # (0: reaped already)
            try:
                os.waitpid(spawned, 0)    # it exits once the zygote is forked
            except ChildProcessError:
                pass
    _owned = owned
    os.environ[ENV_ZYGOTE] = name
    return owned


def _release(owned):
    global _owned
    if _owned is owned:
        _owned = None
    if os.environ.get(ENV_ZYGOTE) == owned.name:
        del os.environ[ENV_ZYGOTE]
    try:
        signal.pidfd_send_signal(owned.pidfd, signal.SIGKILL)
        readable(owned.pidfd, 2)
    except OSError:
        pass
    os.close(owned.pidfd)


def shutdown():
    """Stop the zygote this process started (at the end of its run); its children die with it."""
    owned = _owned
    if owned is not None:
        _release(owned)


def owned_pid():
    """Pid of the zygote this process started, or None."""
    return None if _owned is None else _owned.pid


_serving = None


def serving_pid():
    """Pid of the process that forked this process's last child started by a
    zygote: the run's zygote, or a template of it (zygote_preload), or None."""
    return _serving


_sent_modules = {}       # zygote name -> names of modules already sent to it
_sent_sources = {}       # zygote name -> names of modules / main paths already sent


_last_context = (None, None)     # (key, bytes) of the last context() built


def context(cwd, env, stdout_tty, sigint_ignored):
    """The context part of a request: (cwd, environment as a bytes dict, stdout
    is a tty, the requester ignores SIGINT).

    Byte-identical for equal arguments (cached), so a spare that applied it
    ahead of the request sees at a glance that nothing is left to do.
    """
    global _last_context
    key = (cwd, env, stdout_tty, sigint_ignored)
    if _last_context[0] != key:
        _last_context = (key, pickle.dumps(key, protocol=pickle.HIGHEST_PROTOCOL))
    return _last_context[1]


def request(name, fds, targets, ctx, data_fd, tracker_fd, main_path=None):
    """Ask the zygote to start a child: (pid, pidfd, status socket, exit code or None).

    OSError if it cannot. ctx: context(...) of the child. The message is
    built before connecting, so the zygote finds it as soon as it accepts
    the connection. The exit code is there when the child reported it before
    the zygote's reply arrived (a child that ended at once).
    """
    sent = _sent_modules.setdefault(name, {'key': None, 'names': set()})
    sent_src = _sent_sources.setdefault(name, {'len': 0, 'names': set()})
    before = ({'key': sent['key'], 'names': set(sent['names'])},
              {'len': sent_src['len'], 'names': set(sent_src['names'])})
    modules, packages = requester_modules(sent)
    sources = requester_sources(sent_src, main_path)
    zpart = b''
    if modules or packages or sources:
        zpart = pickle.dumps({'modules': modules, 'packages': packages, 'sources': sources,
                              'debug': _debug_enabled()})
    start = pack_start(targets, data_fd, tracker_fd)
    msg = b''.join((HEAD.pack(MAGIC, len(zpart), len(ctx), len(fds)), zpart, ctx, start))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        try:
            sock.connect(socket_address(name))
            socket.send_fds(sock, [msg], fds)
        except BaseException:
            _sent_modules[name], _sent_sources[name] = before
            raise
        early = None
        while True:
            reply, rfds, _, _ = socket.recv_fds(sock, 4096, 1)
            if not reply:
                raise ConnectionError('dragon_mp: the zygote closed the connection')
            answer = pickle.loads(reply)
            if 'exitcode' in answer and not rfds:
                early = answer['exitcode']       # the child's own report came first
                continue
            break
        if 'error' in answer or len(rfds) != 1:
            for fd in rfds:
                os.close(fd)
            raise OSError(answer.get('error', 'dragon_mp: bad reply from the zygote'))
        global _serving
        _serving = answer.get('server')
        return answer['pid'], rfds[0], sock, early
    except BaseException:
        sock.close()
        raise


def _debug_enabled():
    # The zygote says why it skipped a package when the requester's
    # multiprocessing logger is at DEBUG (log_to_stderr(logging.DEBUG)).
    from multiprocessing import util
    logger = util._logger
    return logger is not None and logger.isEnabledFor(util.DEBUG)


def pack_start(targets, data_fd, tracker_fd):
    """The start part: plain integers, so that the C loop's spare reads it without pickle."""
    return START.pack(data_fd, tracker_fd) + struct.pack(f'<{len(targets)}i', *targets)


def unpack_start(start, nfds):
    """(targets, data_fd, tracker_fd) of a start part for nfds descriptors; ValueError if malformed."""
    if len(start) != START.size + 4 * nfds:
        raise ValueError('descriptor count does not match the request')
    data_fd, tracker_fd = START.unpack_from(start)
    return list(struct.unpack_from(f'<{nfds}i', start, START.size)), data_fd, tracker_fd


def split_request(msg, nfds):
    """(zygote part, context, start) of a request message; ValueError if malformed."""
    if len(msg) < HEAD.size:
        raise ValueError('short request')
    magic, nz, nc, n = HEAD.unpack_from(msg)
    if magic != MAGIC or n != nfds or HEAD.size + nz + nc > len(msg):
        raise ValueError('malformed request')
    a = HEAD.size + nz
    return msg[HEAD.size:a], msg[a:a + nc], msg[a + nc:]


# stdlib modules never imported into the zygote (side effects at import, or GUI).
NO_PRELOAD = frozenset({'__main__', 'antigravity', 'this', 'idlelib', 'tkinter', '_tkinter',
                        'turtle', 'turtledemo', 'pydoc', 'pdb', 'readline', 'rlcompleter',
                        'webbrowser', 'ensurepip', 'venv', 'lib2to3', 'test', 'site'})


def requester_modules(sent):
    """Modules this process has imported that `sent` does not hold yet (and adds them).

    (stdlib, packages): the standard-library modules and the installed
    third-party ones (see "What the zygote holds" above) plus those forced
    by DRAGON_MP_ZYGOTE_PRELOAD, each in import order, minus the forbidden
    ones. The zygote imports them before forking, so a child re-creating a
    main module that imports them finds them loaded. Never the main module
    and never the user's own modules (anything outside the interpreter's
    site directories): they may do anything at import, and they change
    between runs.
    """
    key = (len(sys.modules), os.environ.get(ENV_PRELOAD, ''))
    if sent.get('key') == key:      # nothing imported (or forced) since the last time
        return [], []
    sent['key'] = key
    stdlib = sys.stdlib_module_names
    force, forbid = preload_setting()
    new, packages = [], []
    for name in force:
        if name not in sent['names']:
            sent['names'].add(name)
            packages.append(name)
    for name, mod in list(sys.modules.items()):
        if mod is None or name in sent['names']:
            continue
        sent['names'].add(name)
        top = name.partition('.')[0]
        if top in NO_PRELOAD:
            continue
        if top in stdlib:
            new.append(name)
            continue
        if top == 'dragon_mp' or _forbidden(name, forbid):
            continue
        path = getattr(getattr(mod, '__spec__', None), 'origin', None)
        if isinstance(path, str) and path.startswith(_site_dirs()):
            packages.append(name)
    return new, packages


def preload_setting():
    """(forced, forbidden) module names of DRAGON_MP_ZYGOTE_PRELOAD.

    Comma separated: `name` is imported into the zygote whether or not the
    program imported it (as stdlib's set_forkserver_preload), `-name` is
    never imported (nor its submodules), `-*` turns the automatic preload of
    installed packages off.
    """
    force, forbid = [], []
    for item in os.environ.get(ENV_PRELOAD, '').split(','):
        item = item.strip()
        if item.startswith('-'):
            if item[1:].strip():
                forbid.append(item[1:].strip())
        elif item:
            force.append(item)
    return force, forbid


def _forbidden(name, forbid):
    for f in forbid:
        if f == '*' or name == f or name.startswith(f + '.'):
            return True
    return False


_sites = None


def _site_dirs():
    """The interpreter's site directories (where pip installs), as a tuple of path prefixes.

    From site, which the interpreter imported at start (sysconfig would be
    an import of ~10 ms on the first start); sysconfig only under -S.
    Computed once per process.
    """
    global _sites
    if _sites is None:
        _sites = _find_site_dirs()
    return _sites


def _find_site_dirs():
    dirs = []
    site = sys.modules.get('site')
    if site is not None:
        try:
            dirs += site.getsitepackages() + [site.getusersitepackages()]
        except Exception:
            site = None
    if site is None:
        import sysconfig
        dirs += [sysconfig.get_paths().get(k) for k in ('purelib', 'platlib')]
    out = set()
    for d in dirs:
        if d:
            out.add(os.path.join(d, ''))
            out.add(os.path.join(os.path.realpath(d), ''))
    return tuple(sorted(out))


def requester_sources(sent, main_path):
    """Source files the child will compile (no .pyc to load) that `sent` does not hold yet.

    The main script (re-run as __mp_main__) and the modules this process
    imported from source with no bytecode cache. The zygote compiles each
    once; its children reuse the code object when the file's bytes are
    unchanged (see _install_code_cache), instead of compiling it again.
    """
    new = []
    if main_path and main_path not in sent['names']:
        sent['names'].add(main_path)
        new.append(('main', os.path.abspath(main_path), main_path))
    if sent.get('len') == len(sys.modules):
        return new
    sent['len'] = len(sys.modules)
    stdlib = sys.stdlib_module_names
    for name, mod in list(sys.modules.items()):
        if name in sent['names'] or name.partition('.')[0] in stdlib:
            continue
        sent['names'].add(name)
        spec = getattr(mod, '__spec__', None)
        path = getattr(spec, 'origin', None)
        if not isinstance(path, str) or not path.endswith('.py') or name == '__main__':
            continue
        if _fresh_bytecode(path, getattr(spec, 'cached', None)):
            continue
        new.append(('module', path, path))
    return new


def _fresh_bytecode(path, cached):
    """Whether a child importing path finds valid bytecode in cached (else it compiles).

    A .pyc older than its source (an edited module under
    PYTHONDONTWRITEBYTECODE, which never rewrites it) is compiled again by
    every process that imports it: such a module goes to the zygote too.
    The header's source mtime and size are what importlib checks.
    """
    if not cached:
        return False
    try:
        with open(cached, 'rb') as f:
            head = f.read(16)
        st = os.stat(path)
    except OSError:
        return False
    from importlib.util import MAGIC_NUMBER
    if len(head) < 16 or head[:4] != MAGIC_NUMBER:
        return False
    flags, mtime, size = struct.unpack('<III', head[4:16])
    if flags & 1:
        return True        # hash-based: checked against the source by importlib, if at all
    return mtime == int(st.st_mtime) & 0xFFFFFFFF and size == st.st_size & 0xFFFFFFFF

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

Spares
------
While idle, the zygote forks one child ahead of time (a *spare*): it drops
the zygote's state (listener, connections, pidfds; PR_SET_PDEATHSIG) and
waits on a socketpair. While it waits it also closes every other
descriptor and takes on the context (cwd, environment, stdout buffering) of
the zygote's last request, which the next request most likely shares. A
request is handed to it as received (the same message and descriptors,
SCM_RIGHTS): it installs the descriptors, re-applies the context only if it
differs, and runs. The fork, the child's first copy-on-write faults and the
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

Lifetime
--------
- Started lazily (popen_dragon, first Process start; the start waits until
  it listens, ~0.1 s) by the first process of a run that finds no zygote of
  its run in its environment: the run's head under `python prog.py`, the
  program under `dragon prog.py`. The Go process manager execs it (with
  KillWithParent) in the run's environment (DRAGON_MP_RUN), so run teardown
  (KillRun, the reaper's scan of /proc/*/environ) finds it and its children.
  The exec'd process takes a pidfd of its owner, forks the zygote and exits:
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
                      descriptors), then three pickles, with the descriptors
                      (SCM_RIGHTS):
                      - zygote part: b'' or {'modules', 'sources'} (what the
                        zygote imports or compiles first; empty once sent);
                      - context: (cwd, environment as bytes, stdout is a tty),
                        byte-identical from one start to the next while the
                        requester's cwd and environment stay the same;
                      - start: (targets: fd numbers in the child, one per
                        descriptor, same order; data_fd, tracker_fd).
                      The zygote reads only the head and the zygote part: the
                      child (or spare) reads the rest.
zygote -> requester : pickle {'pid': pid} with the child's pidfd, or {'error': text}
zygote -> requester : pickle {'exitcode': code} when the child has been reaped,
                      then the connection is closed

The connection is the requester's status channel; closing it early (a
released Popen) leaves the child running. Only requests of our own uid are
served.

What the zygote holds (so that children need not import or compile it)
----------------------------------------------------------------------
- Before it is ready: what every child needs (ESSENTIAL). While idle:
  dragon_mp's Python modules (never the Go library), stdlib
  multiprocessing's modules (PRELOAD), and the modules named in
  DRAGON_MP_ZYGOTE_PRELOAD (comma separated; as with forkserver's preload,
  they must be safe to import once and then fork).
- Before serving a request: the standard-library modules the requester has
  imported (sys.stdlib_module_names, minus NO_PRELOAD). The main module and
  third-party or user modules are never imported into the zygote: they may
  start threads, load native libraries (or dragon_mp's Go runtime) or do
  anything at import. The zygote refuses to fork once it has more than one
  thread (the requester then falls back to exec).
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
  when the zygote started) are the zygote's, as for stdlib 'fork' and
  'forkserver' children; `os.environ` is the requester's, /proc/<pid>/environ
  shows the zygote's (it carries the same DRAGON_MP_RUN).
- The child ends like a stdlib fork/forkserver child: after the process has
  run, atexit handlers run and stdio is flushed, then os._exit(): the
  interpreter's teardown of modules (finalizers of objects still referenced
  from modules at exit) is skipped. Tearing down every inherited module
  would copy the zygote's whole heap (~20-30 ms).
- The interpreter (sys.executable, its flags) is the zygote owner's.
"""

import _signal
import os
import pickle
import selectors
import signal
import socket
import struct
import sys
import time

ENV_ZYGOTE = 'DRAGON_MP_ZYGOTE'
ENV_PRELOAD = 'DRAGON_MP_ZYGOTE_PRELOAD'
ENV_SPARE = 'DRAGON_MP_ZYGOTE_SPARE'   # '0': no child forked ahead (fork on each request)
ENV_SPARE_IDLE = 'DRAGON_MP_ZYGOTE_SPARE_IDLE'   # seconds without a request before the spare goes
SPARE_IDLE = 2.0
MAX_MSG = 1 << 20          # largest request (the environment dominates)
MAX_FDS = 256
HEAD = struct.Struct('<4sIII')   # magic, len(zygote part), len(context), number of fds
MAGIC = b'DZy1'

# Not here: multiprocessing.managers and .shared_memory (and dragon_mp's).
# They import secrets -> hashlib -> OpenSSL, ~3.4 MB of RSS in the zygote and
# in every spare. A program that uses them has imported them, and the
# zygote imports a requester's standard-library modules before serving it.
PRELOAD = (
    'pickle', 'ctypes', 'queue', 'threading', 'selectors', 'socket', 'struct', 'runpy',
    'pkgutil', 'fcntl', 'traceback', 'atexit', 'signal', 'tempfile', 'weakref', 'io',
    'multiprocessing', 'multiprocessing.context', 'multiprocessing.process',
    'multiprocessing.spawn', 'multiprocessing.util', 'multiprocessing.reduction',
    'multiprocessing.connection', 'multiprocessing.resource_tracker',
    'multiprocessing.queues', 'multiprocessing.synchronize', 'multiprocessing.pool',
    'multiprocessing.heap', 'multiprocessing.sharedctypes',
    'dragon_mp', 'dragon_mp._core', 'dragon_mp._runtime', 'dragon_mp._shared',
    'dragon_mp._fast', 'dragon_mp.context', 'dragon_mp.process', 'dragon_mp.spawn',
    'dragon_mp.popen_dragon', 'dragon_mp.reduction', 'dragon_mp.queues',
    'dragon_mp.connection', 'dragon_mp.synchronize', 'dragon_mp.sharedctypes',
    'dragon_mp.heap', 'dragon_mp.pool', 'dragon_mp.util',
)


def socket_address(name):
    """The abstract socket address for a zygote name."""
    return '\0' + name


# ---------------------------------------------------------------------------
# the client side (any process of the run)
# ---------------------------------------------------------------------------

START_TIMEOUT = 30.0

_owned = None            # _Owned: the zygote this process started, if any
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
    global _owned, _starts
    from . import _runtime
    _starts += 1
    name = f'dragon_mp.zygote.{runid}.{os.getpid()}-{_starts}'
    argv = _runtime.python_command('from dragon_mp.zygote import main; main()',
                                   name, '3', str(os.getpid()))
    env = [e for e in _runtime.child_environment() if not e.startswith(ENV_ZYGOTE + '=')]
    r, w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        handle = _runtime.start_process({'argv': argv, 'env': env,
                                         'files': [devnull, devnull, 2, w],
                                         'kill_with_parent': True})
    finally:
        os.close(w)
        os.close(devnull)
    try:
        line = b''
        while not line.endswith(b'\n'):
            chunk = os.read(r, 64) if readable(r, START_TIMEOUT) else b''
            if not chunk:
                raise OSError('dragon_mp: the zygote did not start')
            line += chunk
        pid = int(line)
        pidfd = os.pidfd_open(pid)
    except BaseException:
        _stop_handle(handle, kill=True)
        raise
    finally:
        os.close(r)
    _stop_handle(handle, kill=False)      # the intermediate process, gone already
    _owned = _Owned(runid, name, pid, pidfd)
    os.environ[ENV_ZYGOTE] = name
    return _owned


def _stop_handle(handle, kill):
    from . import _core
    gc = _core.gocore()
    try:
        if kill:
            _core.call(gc.ProcSignal, handle, int(signal.SIGKILL))
        _core.call(gc.ProcWait, handle, 2_000_000_000)
    except Exception:
        pass
    try:
        _core.call(gc.ProcRelease, handle)
    except Exception:
        pass


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


_sent_modules = {}       # zygote name -> names of modules already sent to it
_sent_sources = {}       # zygote name -> names of modules / main paths already sent


_last_context = (None, None)     # (key, bytes) of the last context() built


def context(cwd, env, stdout_tty):
    """The context part of a request: (cwd, environment as a bytes dict, stdout is a tty).

    Byte-identical for equal arguments (cached), so a spare that applied it
    ahead of the request sees at a glance that nothing is left to do.
    """
    global _last_context
    key = (cwd, env, stdout_tty)
    if _last_context[0] != key:
        _last_context = (key, pickle.dumps(key, protocol=pickle.HIGHEST_PROTOCOL))
    return _last_context[1]


def request(name, fds, targets, ctx, data_fd, tracker_fd, main_path=None):
    """Ask the zygote to start a child: (pid, pidfd, status socket). OSError if it cannot.

    ctx: context(...) of the child. The message is built before connecting,
    so the zygote finds it as soon as it accepts the connection.
    """
    sent = _sent_modules.setdefault(name, {'len': 0, 'names': set()})
    sent_src = _sent_sources.setdefault(name, {'len': 0, 'names': set()})
    before = ({'len': sent['len'], 'names': set(sent['names'])},
              {'len': sent_src['len'], 'names': set(sent_src['names'])})
    modules = requester_modules(sent)
    sources = requester_sources(sent_src, main_path)
    zpart = pickle.dumps({'modules': modules, 'sources': sources}) if modules or sources else b''
    start = pickle.dumps((targets, data_fd, tracker_fd))
    msg = b''.join((HEAD.pack(MAGIC, len(zpart), len(ctx), len(fds)), zpart, ctx, start))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        try:
            sock.connect(socket_address(name))
            socket.send_fds(sock, [msg], fds)
        except BaseException:
            _sent_modules[name], _sent_sources[name] = before
            raise
        reply, rfds, _, _ = socket.recv_fds(sock, 4096, 1)
        if not reply:
            raise ConnectionError('dragon_mp: the zygote closed the connection')
        answer = pickle.loads(reply)
        if 'error' in answer or len(rfds) != 1:
            for fd in rfds:
                os.close(fd)
            raise OSError(answer.get('error', 'dragon_mp: bad reply from the zygote'))
        return answer['pid'], rfds[0], sock
    except BaseException:
        sock.close()
        raise


def split_request(msg, nfds):
    """(zygote part, context, start) of a request message; ValueError if malformed."""
    if len(msg) < HEAD.size:
        raise ValueError('short request')
    magic, nz, nc, n = HEAD.unpack_from(msg)
    if magic != MAGIC or n != nfds or HEAD.size + nz + nc > len(msg):
        raise ValueError('malformed request')
    a = HEAD.size + nz
    return msg[HEAD.size:a], msg[a:a + nc], msg[a + nc:]


# ---------------------------------------------------------------------------
# the server
# ---------------------------------------------------------------------------

class _Child:
    __slots__ = ('pid', 'pidfd', 'conn', 'requester')

    def __init__(self, pid, pidfd, conn, requester):
        self.pid, self.pidfd, self.conn, self.requester = pid, pidfd, conn, requester


class _Spare:
    __slots__ = ('child', 'sock', 'state')

    def __init__(self, child, sock, state):
        self.child, self.sock, self.state = child, sock, state


class _Server:
    def __init__(self, name, owner_pidfd):
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self.listener.bind(socket_address(name))
        self.listener.listen(64)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ, ('accept', None))
        self.pending = {}       # conn -> requester pid (request not read yet)
        self.children = {}      # pidfd -> _Child
        self.requesters = {}    # requester pid -> [pidfd, set of child pidfds]
        self.pid = os.getpid()
        self.preload = []       # modules still to import when idle
        self.owner_pidfd = owner_pidfd
        self.sel.register(owner_pidfd, selectors.EVENT_READ, ('owner', None))
        self.spare = None       # _Spare: a child forked ahead, waiting for a request
        self.spares = os.environ.get(ENV_SPARE, '1') != '0'
        try:
            self.spare_idle = max(float(os.environ.get(ENV_SPARE_IDLE, SPARE_IDLE)), 0.0)
        except ValueError:
            self.spare_idle = SPARE_IDLE
        self.last_request = time.monotonic()    # a spare is kept only within spare_idle of it
        self.context = None     # context part of the last request (a spare applies it)
        self.trimmed = None     # _state() when the heap was last trimmed

    # -- events -------------------------------------------------------------

    def serve(self):
        """Serve until a child is forked: returns its setup in the child, never in the zygote."""
        while True:
            busy_for = self.last_request + self.spare_idle - time.monotonic()
            if self.spare is not None and busy_for <= 0:
                self._drop_spare()          # idle: give its memory back
            want_spare = self.spares and self.spare is None and busy_for > 0
            timeout = 0 if self.preload or want_spare else None
            if self.spare is not None:
                timeout = busy_for if timeout is None else min(timeout, busy_for)
            events = self.sel.select(timeout)
            if not events and self.preload:
                _import_modules(self.preload[:1], any_module=True)   # when idle
                del self.preload[:1]
                continue
            if not events and want_spare:
                setup = self._fork_spare()                            # when idle
                if setup is not None:
                    return setup        # in the spare, once it has a request
                continue
            for key, _ in events:
                kind, obj = key.data
                try:
                    if kind in ('accept', 'request'):
                        child = self._accept() if kind == 'accept' else self._request(key.fileobj)
                        if child is not None:
                            return child
                    elif kind == 'child':
                        self._reap(obj)
                    elif kind == 'requester':
                        self._requester_gone(obj)
                    elif kind == 'owner':
                        # The run's owner is gone: so is the zygote, and its
                        # children with it (PR_SET_PDEATHSIG).
                        os._exit(0)
                except Exception:
                    # A bug here must not take the run's processes down with
                    # the zygote: report it and keep serving.
                    import traceback
                    traceback.print_exc()

    def _accept(self):
        """Accept a requester's connection and serve its request if it is there already.

        The requester sends right after connecting: reading at once saves a
        turn of the event loop. Returns a child's setup, in the child only.
        """
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return None
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            pid, uid = int.from_bytes(creds[0:4], sys.byteorder), \
                int.from_bytes(creds[4:8], sys.byteorder)
            if uid != os.getuid():
                raise PermissionError(f'uid {uid} may not use this zygote')
            self._watch_requester(pid)
            msg, fds, _, _ = socket.recv_fds(conn, MAX_MSG, MAX_FDS, socket.MSG_DONTWAIT)
        except BlockingIOError:
            self.pending[conn] = pid
            self.sel.register(conn, selectors.EVENT_READ, ('request', None))
            return None
        except OSError:
            conn.close()
            return None
        return self._serve(conn, pid, msg, fds)

    def _watch_requester(self, pid):
        if pid in self.requesters:
            return
        pidfd = os.pidfd_open(pid)
        self.requesters[pid] = [pidfd, set()]
        self.sel.register(pidfd, selectors.EVENT_READ, ('requester', pid))

    def _request(self, conn):
        requester = self.pending.pop(conn)
        self.sel.unregister(conn)
        try:
            msg, fds, _, _ = socket.recv_fds(conn, MAX_MSG, MAX_FDS)
        except OSError:
            conn.close()
            return None
        return self._serve(conn, requester, msg, fds)

    def _serve(self, conn, requester, msg, fds):
        """Start the child a request asks for: hand it to the spare, or fork."""
        self.last_request = time.monotonic()
        try:
            zpart, ctx, _ = split_request(msg, len(fds))
            todo = pickle.loads(zpart) if zpart else {}
        except Exception:
            for fd in fds:
                os.close(fd)
            conn.close()
            return None
        _import_modules(todo.get('modules', ()))
        _compile_sources(todo.get('sources', ()))
        self.context = ctx          # the next spare applies it while it waits
        if self.spare is not None and self._assign_spare(conn, requester, msg, fds):
            return None
        try:
            pid = self._fork()
        except OSError as e:
            for fd in fds:
                os.close(fd)
            self._send(conn, {'error': f'zygote: fork failed: {e}'})
            conn.close()
            return None
        if pid == 0:
            try:
                conn.close()
                return self._child_setup(msg, fds)
            except BaseException:
                # Never let a child fall back into the zygote's loop.
                import traceback
                traceback.print_exc()
                os._exit(1)
        for fd in fds:
            os.close(fd)
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:            # cannot happen for our own unreaped child
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            conn.close()
            return None
        child = _Child(pid, pidfd, conn, requester)
        self.children[pidfd] = child
        self.sel.register(pidfd, selectors.EVENT_READ, ('child', pidfd))
        self._reply(child)
        return None

    def _reply(self, child):
        """Tie a started child to its requester and send its pid and pidfd."""
        conn, pidfd = child.conn, child.pidfd
        if child.requester in self.requesters:
            self.requesters[child.requester][1].add(pidfd)
        try:
            socket.send_fds(conn, [pickle.dumps({'pid': child.pid})], [pidfd])
        except OSError:
            # The requester is gone or gave up: its child must not run on.
            _kill(pidfd)
            child.conn = None
            conn.close()

    # -- spares ---------------------------------------------------------------

    def _state(self):
        """What a child inherits from the zygote beyond its code: a spare forked in another state is stale."""
        return len(sys.modules), len(_code_cache)

    def _fork_spare(self):
        """Fork a child ahead of time; it waits for a request (returns its setup, in the spare only)."""
        state = self._state()
        if self.trimmed != state and _malloc_trim is not None:
            # Imports leave free heap pages behind; every fork copies the page
            # table entries of all of them and every exit unmaps them again.
            # Giving them back once per state (zygote heap 4.9 -> 3.1 MB) made
            # start+join ~3% faster.
            _malloc_trim(0)
            self.trimmed = state
        parent_end, child_end = socket.socketpair(socket.AF_UNIX,
                                                  socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            pid = self._fork()
        except OSError:
            parent_end.close()
            child_end.close()
            self.spares = False        # no longer single-threaded: fork per request (which fails)
            return None
        if pid == 0:
            try:
                parent_end.close()
                return self._spare_wait(child_end)
            except BaseException:
                import traceback
                traceback.print_exc()
                os._exit(1)
        child_end.close()
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            parent_end.close()
            return None
        child = _Child(pid, pidfd, None, None)
        self.children[pidfd] = child
        self.sel.register(pidfd, selectors.EVENT_READ, ('child', pidfd))
        self.spare = _Spare(child, parent_end, state)
        return None

    def _drop_spare(self):
        spare, self.spare = self.spare, None
        if spare is not None:
            spare.sock.close()         # the spare reads EOF and exits; reaped as a child
            _kill(spare.child.pidfd)

    def _assign_spare(self, conn, requester, msg, fds):
        """Hand a request to the waiting spare; False: fork for it instead."""
        spare = self.spare
        if spare.state != self._state() or spare.child.pidfd not in self.children:
            self._drop_spare()         # forked before modules or code the child needs
            return False
        self.spare = None
        try:
            socket.send_fds(spare.sock, [msg], fds)
        except OSError:
            spare.sock.close()
            _kill(spare.child.pidfd)
            return False
        spare.sock.close()
        for fd in fds:
            os.close(fd)
        child = spare.child
        child.conn, child.requester = conn, requester
        self._reply(child)
        return True

    def _fork(self):
        from . import _core
        # The invariant everything rests on: a process with the Go runtime never forks.
        assert _core._loaded_pid is None, 'the zygote has loaded the Go runtime'
        if len(os.listdir('/proc/self/task')) != 1:
            # An import started a thread: a fork would copy its locks mid-use.
            raise OSError('the zygote is no longer single-threaded')
        import gc
        gc.freeze()     # the child's collections skip (and do not copy) the zygote's objects
        return os.fork()

    def _reap(self, pidfd):
        if self.spare is not None and self.spare.child.pidfd == pidfd:
            self.spare.sock.close()    # died while waiting: fork another
            self.spare = None
        child = self.children.pop(pidfd)
        self.sel.unregister(pidfd)
        try:
            _, status = os.waitpid(child.pid, 0)
            code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            code = -signal.SIGKILL
        os.close(pidfd)
        watch = self.requesters.get(child.requester)
        if watch is not None:
            watch[1].discard(pidfd)
        if child.conn is not None:
            self._send(child.conn, {'exitcode': code})
            child.conn.close()

    def _requester_gone(self, pid):
        pidfd, kids = self.requesters.pop(pid)
        self.sel.unregister(pidfd)
        os.close(pidfd)
        for kid in kids:
            _kill(kid)      # reaped (and reported to nobody) when its pidfd fires

    @staticmethod
    def _send(conn, obj):
        try:
            conn.send(pickle.dumps(obj))
        except OSError:
            pass

    # -- in the child ---------------------------------------------------------

    def _spare_wait(self, sock):
        """In a spare: drop the zygote's state, wait for a request, then become its child.

        While it waits, it does what a child of the zygote's last request's
        context would do first (descriptors closed, cwd, environment, stdout
        buffering): a request from the same context only installs descriptors.
        """
        self._leave_zygote()
        _close_fds_except({sock.fileno()})
        applied = None
        if self.context is not None:
            try:
                _apply_context(self.context)
                applied = self.context
            except Exception:
                pass                   # applied again, and reported, with the request
        fds = []
        try:
            msg, fds, _, _ = socket.recv_fds(sock, MAX_MSG, MAX_FDS)
        except BaseException:
            os._exit(0)
        if not msg:
            os._exit(0)                # discarded by the zygote
        sock.close()
        return self._child_setup(msg, fds, left=True, applied=applied)

    def _leave_zygote(self):
        # PDEATHSIG first: a forked copy never outlives the zygote.
        _set_pdeathsig(signal.SIGKILL)
        if os.getppid() != self.pid:
            os._exit(1)
        # Close the zygote's objects properly: none may later close a number
        # that now belongs to the child.
        self.sel.close()
        self.listener.close()
        for conn in self.pending:
            conn.close()
        for child in self.children.values():
            if child.conn is not None:
                child.conn.close()
            os.close(child.pidfd)
        for pidfd, _ in self.requesters.values():
            os.close(pidfd)
        if self.spare is not None:
            self.spare.sock.close()
        os.close(self.owner_pidfd)
        self.pending = self.children = self.requesters = self.spare = None

    def _child_setup(self, msg, fds, left=False, applied=None):
        """Turn the forked copy into the requested process's starting state.

        left: the zygote's state is dropped already (a spare); applied: the
        context the spare applied ahead of the request.
        """
        # The zygote ignores SIGINT (Ctrl-C belongs to the program); a child
        # gets Python's default, as a fresh interpreter does. (_signal: the
        # signal module's wrapper converts to enums, ~0.1 ms in a fresh fork.)
        _signal.signal(_signal.SIGINT, _signal.default_int_handler)
        if not left:
            self._leave_zygote()
            _close_fds_except(set(fds))
        _, ctx, start = split_request(msg, len(fds))
        targets, data_fd, tracker_fd = pickle.loads(start)
        if len(targets) != len(fds):
            raise ValueError('descriptor count does not match the request')
        _install_fds(fds, targets)
        if ctx != applied:
            _apply_context(ctx)
        return data_fd, tracker_fd


def _apply_context(ctx):
    """Take on a request's cwd, environment and stdout buffering."""
    cwd, env, stdout_tty = pickle.loads(ctx)
    os.chdir(cwd)
    _set_environ(env)
    stream = sys.stdout
    if stream is not None and getattr(stream, 'line_buffering', stdout_tty) != stdout_tty:
        try:
            stream.reconfigure(line_buffering=stdout_tty)
        except (OSError, ValueError, AttributeError):
            pass


def _set_environ(env):
    """Make os.environ (and the C environment) `env` (bytes to bytes), touching only what differs."""
    current = os.environb
    for key in [k for k in current if k not in env]:
        del current[key]
    for key, value in env.items():
        if current.get(key) != value:
            current[key] = value


def _kill(pidfd):
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except OSError:
        pass


_prctl = None           # libc's prctl, resolved in the zygote before any fork
_malloc_trim = None     # glibc's malloc_trim, likewise (None: not glibc)


def _set_pdeathsig(sig):
    PR_SET_PDEATHSIG = 1
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def _close_fds_except(keep):
    """Close every descriptor above 2 that is not in keep."""
    for name in os.listdir('/proc/self/fd'):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _install_fds(fds, targets):
    """Put fds[i] at targets[i], when the descriptors open are 0-2 and fds only."""
    top = max([2, *targets, *fds]) + 1
    import fcntl
    moved = []
    for fd in fds:             # out of the way of every target first
        moved.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, top))
        os.close(fd)
    for fd, target in zip(moved, targets):
        os.dup2(fd, target)    # inheritable, as in an exec'd child
        os.close(fd)
    for fd in (0, 1, 2):       # a standard stream the requester had closed
        if fd not in targets:
            try:
                os.close(fd)
            except OSError:
                pass


# stdlib modules never imported into the zygote (side effects at import, or GUI).
NO_PRELOAD = frozenset({'__main__', 'antigravity', 'this', 'idlelib', 'tkinter', '_tkinter',
                        'turtle', 'turtledemo', 'pydoc', 'pdb', 'readline', 'rlcompleter',
                        'webbrowser', 'ensurepip', 'venv', 'lib2to3', 'test', 'site'})


def requester_modules(sent):
    """stdlib modules this process has imported that `sent` does not hold yet (and adds them).

    The zygote imports them before forking, so a child re-creating a main
    module that imports them finds them loaded. Only the standard library:
    third-party modules may start threads or load native libraries at import
    (unsafe to fork), and user modules may do anything.
    """
    if sent.get('len') == len(sys.modules):      # nothing imported since the last time
        return []
    sent['len'] = len(sys.modules)
    stdlib = sys.stdlib_module_names
    new = [name for name, mod in list(sys.modules.items())
           if mod is not None and name not in sent['names']
           and name.partition('.')[0] in stdlib and name.partition('.')[0] not in NO_PRELOAD]
    sent['names'].update(new)
    return new


def _import_modules(names, any_module=False):
    """Import names into the zygote (stdlib modules only, unless any_module)."""
    import importlib
    for name in names:
        if name in sys.modules or name.partition('.')[0] in NO_PRELOAD:
            continue
        if not any_module and name.partition('.')[0] not in sys.stdlib_module_names:
            continue
        try:
            importlib.import_module(name)
        except BaseException:
            pass


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
        cached = getattr(spec, 'cached', None)
        if cached and os.path.exists(cached):
            continue
        new.append(('module', path, path))
    return new


_code_cache = {}          # (kind, path) -> (source bytes, code object)
MAX_SOURCE = 4 << 20


def _compile_sources(entries):
    for kind, path, fname in entries:
        try:
            with open(path, 'rb') as f:
                data = f.read(MAX_SOURCE + 1)
            if len(data) > MAX_SOURCE:
                continue
            if kind == 'main':
                code = compile(data, fname, 'exec', dont_inherit=True)
                _code_cache[('main', fname)] = (data, code)
                _cache_no_importer(fname)
            else:
                from importlib.machinery import SourceFileLoader
                code = _orig_source_to_code(SourceFileLoader('_', path), data, path)
                _code_cache[('module', path)] = (data, code)
        except BaseException:
            pass


def _cache_no_importer(path):
    """Record that no path hook handles the main script path, as a child's runpy would find.

    runpy.run_path asks pkgutil.get_importer, which tries every path hook
    (zipimport reads the file) and caches only a hook that accepts it: for a
    plain script each child would try them all again. A script no hook
    accepts is run as code either way; a zip or directory is left alone.
    """
    import pkgutil
    try:
        if pkgutil.get_importer(path) is None:
            sys.path_importer_cache.setdefault(path, None)
    except Exception:
        pass


def _main_code(fname, importer_checked=False):
    """The code the zygote compiled for the main script fname, if the file's bytes are unchanged.

    Unless importer_checked, also None when runpy would not run the file as
    plain code (a path hook takes it, or none was looked up).
    """
    entry = _code_cache.get(('main', fname))
    if entry is None:
        return None
    if not importer_checked and sys.path_importer_cache.get(fname, entry) is not None:
        return None
    # os.read of one byte more than the cached source: a file object (and
    # read()'s MAX_SOURCE buffer) would cost ~0.1 ms in a fresh fork.
    try:
        fd = os.open(os.path.abspath(os.fsdecode(fname)), os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, len(entry[0]) + 1)
        finally:
            os.close(fd)
    except OSError:
        return None
    return entry[1] if data == entry[0] else None


_orig_source_to_code = None


def _install_code_cache():
    """Make the zygote's children reuse code it compiled, for byte-identical sources only."""
    global _orig_source_to_code
    import inspect
    import runpy
    from importlib.machinery import SourceFileLoader

    orig_s2c = _orig_source_to_code = SourceFileLoader.source_to_code

    def source_to_code(self, data, path, *, _optimize=-1):
        entry = _code_cache.get(('module', path))
        if entry is not None and _optimize == -1 and entry[0] == data:
            return entry[1]
        return orig_s2c(self, data, path, _optimize=_optimize)

    orig_get = getattr(runpy, '_get_code_from_file', None)
    if orig_get is not None:
        with_name = len(inspect.signature(orig_get).parameters) == 2   # 3.11: (run_name, fname)

        def _get_code_from_file(*args):
            code = _main_code(args[-1], importer_checked=True)
            if code is not None:
                return (code, args[-1]) if with_name else code
            return orig_get(*args)

        runpy._get_code_from_file = _get_code_from_file
    SourceFileLoader.source_to_code = source_to_code
    from . import spawn
    spawn.main_code = _main_code


# What a child needs before it runs anything: imported before the zygote says it is ready.
ESSENTIAL = ('dragon_mp.spawn', 'dragon_mp._core', 'multiprocessing.spawn', 'runpy', 'pkgutil',
             'ctypes', 'fcntl', 'traceback')


def _preload_list():
    """The rest, imported while the zygote is idle (a child forked earlier imports what it needs)."""
    names = list(PRELOAD)
    names += [n.strip() for n in os.environ.get(ENV_PRELOAD, '').split(',') if n.strip()]
    return names


def main():
    """argv: zygote name, ready fd (the zygote writes its pid there once listening), owner pid."""
    global _prctl, _malloc_trim
    name, ready_fd, owner = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    # Watch the owner (the pidfd is taken while it is surely our parent),
    # then leave its children: the process exec'd by the owner exits at once
    # and the zygote carries on as an orphan, so the owner's child
    # processes are only the ones the program started.
    if os.getppid() != owner:
        os._exit(1)
    owner_pidfd = os.pidfd_open(owner)
    if os.fork() != 0:
        os._exit(0)
    # Ctrl-C in a terminal reaches the whole process group: the program's
    # children handle it themselves; the zygote stays for the run.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.stderr is not None:
        try:
            sys.stderr.reconfigure(line_buffering=True)   # as in every Python child
        except (OSError, ValueError, AttributeError):
            pass
    _import_modules(ESSENTIAL)
    _install_code_cache()
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    _prctl = libc.prctl
    _malloc_trim = getattr(libc, 'malloc_trim', None)     # glibc only
    _prctl.restype = ctypes.c_int
    _prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                       ctypes.c_ulong]
    from . import _core
    assert _core._loaded_pid is None, 'the zygote has loaded the Go runtime'
    server = _Server(name, owner_pidfd)
    server.preload = _preload_list()
    os.write(ready_fd, f'{os.getpid()}\n'.encode())
    os.close(ready_fd)
    data_fd, tracker_fd = server.serve()
    del server
    _run_child(data_fd, tracker_fd)


def _run_child(data_fd, tracker_fd):
    """Run the process like an exec'd child, then exit without interpreter teardown.

    An exec'd child ends with sys.exit(): atexit handlers, stdio flushed,
    then the interpreter's teardown of every module. A fork of the zygote
    carries all the preloaded modules, and tearing them down writes to every
    page of the inherited heap (copy-on-write: ~20-30 ms); so, like stdlib's
    fork and forkserver children, it ends with os._exit() once atexit
    handlers have run and stdio is flushed.
    """
    from .spawn import spawn_main
    try:
        spawn_main(data_fd, tracker_fd)
        code = 0
    except SystemExit as e:
        code = e.code
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 1
    if code is None:
        code = 0
    elif not isinstance(code, int):
        try:
            print(code, file=sys.stderr)
        except Exception:
            pass
        code = 1
    try:
        import atexit
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except Exception:
                pass
        os._exit(code & 0xff)

if __name__ == '__main__':
    main()

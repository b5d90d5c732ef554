"""The zygote process: it serves start requests by fork() and never loads Go.

The design, the protocol and what a child inherits are described in
dragon_mp.zygote, which is also the client side (what a requester runs).
This module runs only in the zygote and in the children it forks:

- _Server: the event loop. Its steady-state cycle (accept, hand the
  request to the spare, reply, reap, fork the next spare, requesters'
  ends) is C: dragon_mp._zygote_loop (pyext/zygote_loop.c). Python does
  what needs Python: imports, compiles, new contexts, preloading, and
  forks on request when there is no spare;
- the spare's wait and the child's setup (the steps themselves are in
  dragon_mp.zygote_child, which also runs the child and reports its exit);
- the code cache: sources compiled once for every child;
- main(): the zygote's entry, exec'd by the first requester of a run.
"""

import os
import pickle
import signal
import socket
import sys
import time

from . import zygote_child, zygote_preload
from .zygote import (ENV_SPARE, ENV_SPARE_IDLE, NO_PRELOAD, SPARE_IDLE, socket_address,
                     split_request, unpack_start)

__all__ = ['main']

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
    # The data plane's C extension: its import does not load Go (_fastpath.init
    # does, in the child), and saves a child that uses dragon_mp objects ~1 ms.
    'dragon_mp._fast', 'dragon_mp._fastpath', 'dragon_mp.context', 'dragon_mp.process', 'dragon_mp.spawn',
    'dragon_mp.popen_dragon', 'dragon_mp.reduction', 'dragon_mp.queues',
    'dragon_mp.connection', 'dragon_mp.synchronize', 'dragon_mp.sharedctypes',
    'dragon_mp.heap', 'dragon_mp.pool', 'dragon_mp.util',
)


# ---------------------------------------------------------------------------
# the server
# ---------------------------------------------------------------------------

class _Server:
    def __init__(self, name, owner_pidfd):
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self.listener.bind(socket_address(name))
        self.listener.listen(64)
        self.pid = os.getpid()
        self.preload = []       # modules still to import when idle
        self.owner_pidfd = owner_pidfd
        self.spares = os.environ.get(ENV_SPARE, '1') != '0'
        try:
            self.spare_idle = max(float(os.environ.get(ENV_SPARE_IDLE, SPARE_IDLE)), 0.0)
        except ValueError:
            self.spare_idle = SPARE_IDLE
        self.context = None     # context part of the last request (a spare applies it)
        self.context_parsed = None   # (cwd, env, stdout_tty, sigint_ignored) of it; env is the zygote's own
        self.trimmed = None     # _state() when the heap was last trimmed
        self.packages = zygote_preload.Preloader()   # installed packages imported, skipped
        self.packages_todo = None   # (names, debug) of the request being served
        self.template = None    # _Template: a copy importing packages, or serving with them
        self.depth = 0          # templates between the run's zygote and this process
        self.initial = []       # packages to make a template with at once (main())

    # -- events -------------------------------------------------------------

    def serve(self, loop):
        """Serve until a child is forked: returns its setup in the child, never in the zygote.

        The steady-state cycle is loop's (dragon_mp._zygote_loop, see
        dragon_mp.zygote, "The loop in C"); it returns here only for what
        needs Python: a request with a zygote part or a new context, or with
        no fresh spare (Python forks for it and hands the child to C), an
        idle turn while modules are left to preload, and, in a spare it
        forked, the spare's wait.
        """
        loop.setup(self.listener.fileno(), self.owner_pidfd, self.pid)
        if self.initial:
            # Packages the requester's main script imports: the template
            # imports them while the program does (dragon_mp.zygote.prestart).
            names, self.initial = self.packages.todo(self.initial), []
            if names:
                self._start_template(loop, names, False, None)
        while True:
            try:
                event = loop.serve(self._fork_state(), self.spares, self.spare_idle,
                                   bool(self.preload))
                if event[0] == 'spare':
                    try:
                        return self._spare_wait(event[1], loop)
                    except BaseException:
                        # Never let a child fall back into the zygote's loop.
                        import traceback
                        traceback.print_exc()
                        os._exit(1)
                if event[0] == 'idle':
                    _import_modules(self.preload[:1], any_module=True)
                    del self.preload[:1]
                    continue
                if event[0] == 'watch':
                    child = self._template_event(loop)
                else:
                    _, conn, requester, msg, fds = event
                    child = self._serve_request(loop, conn, requester, msg, fds)
                if child is not None:
                    return child
            except Exception:
                # A bug here must not take the run's processes down with
                # the zygote: report it and keep serving.
                import traceback
                traceback.print_exc()
                time.sleep(0.01)       # a persistent error must not spin

    def _fork_state(self):
        """What _fork checks, once per return from the C loop; the state as one integer."""
        if not _may_fork():
            self.spares = False        # fork no more spares
        state = self._trimmed_state()
        import gc
        gc.freeze()                    # nothing new after this: the C loop creates no objects
        return state[0] << 32 | state[1]

    def _serve_request(self, loop, conn, requester, msg, fds):
        """A request the C loop left to Python (conn: a descriptor): take it on, then
        hand it to the C loop's spare, or fork for it."""
        try:
            known = self.context
            if not self._take_on(msg, fds):
                _close_request(conn, fds)
                return None
            if self.context is not known and self.context is not None:
                loop.set_context(self.context)   # its fast path serves this context now
            todo, self.packages_todo = self.packages_todo, None
            if todo is not None:
                names = self.packages.todo(todo[0])
                if names and self.template is None:
                    done, child = self._start_template(loop, names, todo[1],
                                                       (conn, requester, msg, fds))
                    if done:
                        return child
        except BaseException:
            _close_request(conn, fds)   # Python owns them here: a requester must not wait forever
            raise
        return self._serve_taken(loop, conn, requester, msg, fds)

    def _serve_taken(self, loop, conn, requester, msg, fds):
        """Serve a request taken on: hand it to the spare, or fork for it."""
        try:
            if loop.assign_spare(self._fork_state(), conn, requester, msg, fds):
                return None
        except BaseException:
            _close_request(conn, fds)
            raise
        try:
            pid, setup = self._fork_for_request(msg, fds, conn)
        except OSError as e:
            with socket.socket(fileno=conn) as sock:
                try:
                    sock.send(pickle.dumps({'error': f'zygote: fork failed: {e}'}))
                except OSError:
                    pass
            return None
        if pid == 0:
            return setup
        loop.adopt_child(pid, conn, requester)
        return None

    def _take_on(self, msg, fds):
        """What a request asks of the zygote itself: imports, compiles, its context. False: malformed."""
        try:
            zpart, ctx, _ = split_request(msg, len(fds))
            todo = pickle.loads(zpart) if zpart else {}
        except Exception:
            return False
        _import_modules(todo.get('modules', ()))
        _compile_sources(todo.get('sources', ()))
        if ctx != self.context:
            self._adopt_context(ctx)     # the next spare applies it while it waits
        if todo.get('packages'):
            # A template imports them (after the context was adopted: a
            # package may read the environment at import), then serves this
            # request and the ones after it (_start_template).
            self.packages_todo = (todo['packages'], todo.get('debug', False))
        if todo.get('debug'):
            self.packages.report(True)
        return True

    # -- templates (the design: dragon_mp.zygote_preload) ----------------------

    def _start_template(self, loop, names, debug, held):
        """Fork a template that imports names, then serves; stop accepting meanwhile.

        held: the request that brought the names (conn, requester, msg, fds),
        or None. Returns (done, child): done False if no template was made
        (the caller serves held itself); child: a child's setup in a process
        the template forked for held, else None.
        """
        if self.depth >= zygote_preload.MAX_TEMPLATES:
            for name in names:
                self.packages.skip(name, f'{zygote_preload.MAX_TEMPLATES} sets of packages were '
                                   'preloaded already', debug, top=False)
            return False, None
        mine, theirs = socket.socketpair(socket.AF_UNIX,
                                         socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            pid = self._fork()
        except OSError:
            mine.close()
            theirs.close()
            return False, None
        if pid == 0:
            try:
                mine.close()
                return True, self._become_template(loop, theirs, names, held)
            except BaseException:
                import traceback
                traceback.print_exc()
                os._exit(1)
        theirs.close()
        self.template = _Template(pid, mine, names, debug, held)
        loop.listening(False)         # requests wait in the backlog for the template
        loop.watch_fd(mine.fileno())
        return True, None

    def _become_template(self, loop, sock, names, held):
        """In the template: import names, report, then serve as a zygote (held first)."""
        _set_pdeathsig(signal.SIGKILL)     # never outlives the zygote that made it
        if os.getppid() != self.pid:
            os._exit(1)
        keep = {self.listener.fileno(), self.owner_pidfd, sock.fileno()}
        if held is not None:
            keep |= {held[0], *held[3]}
        zygote_child.close_fds_except(keep)   # the zygote's children, requesters, spare, epoll
        loop.reset()
        self.template = None
        signal.alarm(zygote_preload.TEMPLATE_TIMEOUT)     # an import that hangs ends us

        def report(kind, name, why):
            sock.send(zygote_preload.encode(kind, name, why))
            if kind == 'fail':         # ours too: a debug requester of ours hears of it
                self.packages.failed(name, why, False)

        ok = zygote_preload.import_checked(names, report)
        signal.alarm(0)
        if not ok:
            os._exit(0)
        if not _may_fork():
            sock.send(zygote_preload.encode('unsafe', names[-1], 'threads left after the imports'))
            os._exit(0)
        self.pid = os.getpid()
        self.depth += 1
        self.template_link = sock     # kept open: EOF tells the zygote we are gone
        self.trimmed = None
        loop.setup(self.listener.fileno(), self.owner_pidfd, self.pid)
        if self.context is not None:
            loop.set_context(self.context)
        sock.send(zygote_preload.encode('ready', ''))
        if held is None:
            return None
        return self._serve_taken(loop, *held)

    def _template_event(self, loop):
        """A report of the template (or its end). Returns a child's setup or None."""
        t = self.template
        try:
            data = t.sock.recv(8192)
        except OSError:
            data = b''
        if data:
            kind, name, why = zygote_preload.decode(data)
            if kind == 'ok':
                t.done.add(name)
            elif kind == 'fail':
                t.done.add(name)
                self.packages.failed(name, why, t.debug)
            elif kind == 'unsafe':
                t.unsafe = True
                self.packages.skip(name, why, t.debug)
            elif kind == 'ready':
                t.live = True
                self.preload = []             # the template imports what is left
                if t.held is not None:        # the template has its own copies
                    _close_request(t.held[0], t.held[3])
                    t.held = None
            return None
        # The template ended.
        loop.unwatch_fd(t.sock.fileno())
        t.sock.close()
        _, status = os.waitpid(t.pid, 0)
        self.template = None
        if not t.live and not t.unsafe:
            pending = [n for n in t.names if n not in t.done]
            if pending:
                why = ('its import took more than %d s' % zygote_preload.TEMPLATE_TIMEOUT
                       if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGALRM
                       else f'the process importing it {_ended(status)}')
                self.packages.skip(pending[0], why, t.debug)
        names = [] if t.live else self.packages.todo(t.names)
        if names:                          # the rest, in a new template
            done, child = self._start_template(loop, names, t.debug, t.held)
            if done:
                return child
        loop.listening(True)
        if t.held is not None:             # nothing left to preload: serve it cold
            return self._serve_taken(loop, *t.held)
        return None

    def _fork_for_request(self, msg, fds, conn):
        """Fork a child for a request: (0, its setup) in the child, (pid, None) here; OSError: none.

        conn: the request's connection (a descriptor). On OSError, fds are
        closed and conn is left to the caller.
        """
        try:
            pid = self._fork()
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        if pid == 0:
            try:
                return 0, self._child_setup(msg, fds + [conn])
            except BaseException:
                # Never let a child fall back into the zygote's loop.
                import traceback
                traceback.print_exc()
                os._exit(1)
        for fd in fds:
            os.close(fd)
        return pid, None

    # -- spares ---------------------------------------------------------------

    def _state(self):
        """What a child inherits from the zygote beyond its code: a spare forked in another state is stale."""
        return len(sys.modules), len(_code_cache)

    def _trimmed_state(self):
        """_state(), with the heap trimmed once per state before spares are forked in it
        (the C loop forks them in the state it was given).

        Imports leave free heap pages behind; every fork copies the page table
        entries of all of them and every exit unmaps them again. Giving them
        back once per state (zygote heap 4.9 -> 3.1 MB) made start+join ~3% faster.
        """
        state = self._state()
        if self.trimmed != state and _malloc_trim is not None:
            _malloc_trim(0)
            self.trimmed = state
        return state

    def _adopt_context(self, ctx):
        """Take on a new request context's environment, for the spares to inherit.

        Only the environment: the zygote's cwd stays (its imports must not
        find a user's files). Unpickling and applying the environment cost a
        spare ~80 copy-on-write faults; here they are paid once per context.
        """
        try:
            cwd, env, stdout_tty, sigint_ignored = pickle.loads(ctx)
            zygote_child.set_environ(env)
        except Exception:
            self.context = self.context_parsed = None   # each child applies its own
            return
        self.context, self.context_parsed = ctx, (cwd, env, stdout_tty, sigint_ignored)

    def _fork(self):
        if not _may_fork():
            raise OSError('the zygote is no longer single-threaded')
        import gc
        gc.freeze()     # the child's collections skip (and do not copy) the zygote's objects
        return os.fork()

    # -- in the child ---------------------------------------------------------

    def _spare_wait(self, sock_fd, loop):
        """In a spare: drop the zygote's state, wait for a request, then become its child.

        While it waits, it does what a child of the zygote's last request's
        context would do first (descriptors closed, cwd, environment, stdout
        buffering): a request from the same context only installs descriptors.
        loop: the C loop that forked it, which also takes the request in.
        """
        self._leave_zygote({sock_fd}, deathsig_set=True)
        applied = None
        if self.context_parsed is not None:
            try:
                cwd, _, stdout_tty, sigint_ignored = self.context_parsed
                # (The environment is ours already.)
                zygote_child.apply_context(cwd, None, stdout_tty, sigint_ignored)
                applied = self.context
            except Exception:
                pass                   # applied again, and reported, with the request
        zygote_child.close_stdin_ahead()
        # Receiving and installing the descriptors in C: ~0.15 ms less on
        # the start's path than the socket module's recv_fds and
        # _child_setup's steps in a fresh fork.
        ahead = zygote_child.stdin_ahead
        got = loop.take_request(sock_fd, -1 if ahead is None else ahead.fileno())
        if got is None:
            os._exit(0)                # discarded by the zygote
        ctx, data_fd, tracker_fd, status, stdin_taken = got
        zygote_child.finish_setup(ctx, applied, status, stdin_taken)
        return data_fd, tracker_fd

    def _leave_zygote(self, keep, deathsig_set=False):
        """Drop the zygote's descriptors (all but keep and 0-2); its objects stay, unused.

        deathsig_set: the C loop's fork (of a spare) did the first step already.
        """
        # PDEATHSIG first: a forked copy never outlives the zygote.
        if not deathsig_set:
            _set_pdeathsig(signal.SIGKILL)
            if os.getppid() != self.pid:
                os._exit(1)
        # One close_range for every descriptor: releasing the zygote's
        # objects one by one (selector, sockets) cost ~0.25 ms and ~100
        # copy-on-write faults a start. The objects stay referenced until
        # os._exit, so none closes a number that now belongs to the child.
        zygote_child.left_behind = self
        zygote_child.close_fds_except(keep)

    def _child_setup(self, msg, fds):
        """Turn a copy forked for a request (no spare) into the requested process's starting state.

        fds: the request's descriptors, then its connection (the child
        reports its exit status there). What a spare does ahead (context,
        stdin) is left to finish_setup and _bootstrap, as in an exec'd child.
        """
        self._leave_zygote(set(fds))
        status = fds.pop()
        _, ctx, start = split_request(msg, len(fds))
        targets, data_fd, tracker_fd = unpack_start(start, len(fds))
        status = zygote_child.install_fds(fds, targets, status)
        zygote_child.finish_setup(ctx, None, status, False)
        return data_fd, tracker_fd


def _close_request(conn, fds):
    """Close a request's descriptors and its connection (the requester sees EOF)."""
    for fd in fds + [conn]:
        os.close(fd)


def _ended(status):
    if os.WIFSIGNALED(status):
        try:
            return f'was killed by {signal.Signals(os.WTERMSIG(status)).name}'
        except ValueError:
            return f'was killed by signal {os.WTERMSIG(status)}'
    return f'exited with code {os.waitstatus_to_exitcode(status)}'


class _Template:
    """The zygote's view of a template it forked (dragon_mp.zygote_preload)."""

    def __init__(self, pid, sock, names, debug, held):
        self.pid, self.sock, self.names, self.debug, self.held = pid, sock, names, debug, held
        self.done = set()       # names reported imported or failed
        self.unsafe = False     # it reported an unsafe module (and exits)
        self.live = False       # it serves requests


_prctl = None           # libc's prctl, resolved in the zygote before any fork
_malloc_trim = None     # glibc's malloc_trim, likewise (None: not glibc)


def _set_pdeathsig(sig):
    PR_SET_PDEATHSIG = 1
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def _may_fork():
    """Whether the zygote may fork: one thread only (an import that started one would
    have a fork copy its locks mid-use). A Go runtime here is a bug: AssertionError."""
    from . import _core
    # The invariant everything rests on: a process with the Go runtime never forks.
    assert _core._loaded_pid is None, 'the zygote has loaded the Go runtime'
    return len(os.listdir('/proc/self/task')) == 1


def _c_loop():
    """dragon_mp._zygote_loop, the steady-state cycle in C; ImportError if it is not built.

    There is no other loop: without it the zygote does not start (main()
    imports it first; the requester then starts its processes by exec, as
    for any zygote that cannot start, and the error is on its stderr).
    """
    try:
        from . import _zygote_loop
    except ImportError as e:
        raise ImportError('dragon_mp: the zygote needs the C extension dragon_mp._zygote_loop '
                          '(pyext/zygote_loop.c), which is not built; `pip install .` builds it '
                          'with a C compiler') from e
    return _zygote_loop


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
    # read()'s MAX_SOURCE buffer) would cost ~0.1 ms in a fresh fork. A main
    # path from spawn's preparation data is absolute and normalized already,
    # which abspath (pure Python, ~20 us there) would leave as it is.
    path = fname
    if not (isinstance(path, str) and path[:1] == '/' and '//' not in path
            and '/.' not in path and path[-1:] != '/'):
        path = os.path.abspath(os.fsdecode(fname))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
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
    """The rest, imported while the zygote is idle (a child forked earlier imports what it needs).

    Only dragon_mp's and the standard library's: installed packages (and
    those DRAGON_MP_ZYGOTE_PRELOAD forces) come with requests and are probed
    first (dragon_mp.zygote_preload).
    """
    return list(PRELOAD)


def main():
    """argv: zygote name, ready fd (the zygote writes its pid there once listening), owner pid,
    and optionally the packages to make a template with at once (comma separated)."""
    global _prctl, _malloc_trim
    name, ready_fd, owner = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    # Watch the owner (the pidfd is taken while it is surely our parent),
    # then leave its children: the process exec'd by the owner exits at once
    # and the zygote carries on as an orphan, so the owner's child
    # processes are only the ones the program started.
    if os.getppid() != owner:
        os._exit(1)
    # Without the C loop, no zygote: the ImportError (on the owner's stderr)
    # ends this process before it is ready, and the owner starts by exec.
    loop = _c_loop()
    owner_pidfd = os.pidfd_open(owner)
    if os.fork() != 0:
        os._exit(0)
    # Ctrl-C in a terminal reaches the whole process group: the program's
    # children handle it themselves; the zygote stays for the run. SIGINT is
    # also blocked, so that a fork inherits it blocked: the kernel keeps a
    # blocked signal pending even where it is ignored, and a child that gets
    # Ctrl-C before it has taken on its requester's handler (finish_setup)
    # still receives it then (see zygote_child.end_setup), as a forked or
    # exec'd child would at once.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
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
    if len(sys.argv) > 4:
        server.initial = [n for n in sys.argv[4].split(',') if n]
    os.write(ready_fd, f'{os.getpid()}\n'.encode())
    os.close(ready_fd)
    data_fd, tracker_fd = server.serve(loop)
    del server
    zygote_child.run(data_fd, tracker_fd)


if __name__ == '__main__':
    main()

"""The zygote's children: how a forked copy becomes the requested process, and how it ends.

dragon_mp.zygote has the design; dragon_mp.zygote_server forks the copies
(spares, or children forked for a request) and calls these steps:

- while a spare waits: stdin becomes /dev/null ahead of _bootstrap, the
  request context (cwd, environment, stdout buffering) is taken on;
- with the request: the zygote's descriptors go, the request's are
  installed at their numbers, the status connection above them;
- run(): the process runs like an exec'd child, then report_exit() sends
  its exit status to the requester, and os._exit() ends it.

State, in the child only: status (finish_setup), stdin_ahead, and
left_behind (set by dragon_mp.zygote_server).
"""

import _signal
import os
import pickle
import sys

__all__ = []   # internal: nothing for `from ... import *`

# What the child's first step (Process._bootstrap -> util._close_stdin) does,
# done by the spare while it waits: stdin becomes /dev/null. The file object
# costs ~0.1 ms in a fresh fork. Its descriptor is a high number, so that a
# request's descriptors land elsewhere (else it is dropped: take_request in
# the C loop says so, and finish_setup leaves the step to _bootstrap).
STDIN_FD_MIN = 64
stdin_ahead = None      # the /dev/null stdin the spare made, until _bootstrap's turn
_close_stdin_orig = None


def close_stdin_ahead():
    """In a spare: make stdin /dev/null as util._close_stdin will, and make that step a no-op."""
    global stdin_ahead, _close_stdin_orig
    from multiprocessing import util
    if sys.stdin is None:
        return
    try:
        sys.stdin.close()
    except (OSError, ValueError):
        pass
    try:
        import fcntl
        fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, STDIN_FD_MIN)
        finally:
            os.close(fd)
        try:
            sys.stdin = stdin_ahead = open(high, encoding='utf-8', closefd=False)
        except BaseException:
            os.close(high)
            raise
    except (OSError, ValueError):
        return
    _close_stdin_orig, util._close_stdin = util._close_stdin, _close_stdin_done


def _close_stdin_done():
    """util._close_stdin in a child whose spare did it: nothing is left to do."""
    from multiprocessing import util
    util._close_stdin = _close_stdin_orig
    if sys.stdin is not stdin_ahead:
        _close_stdin_orig()


def drop_stdin_ahead():
    """Leave the step to _bootstrap: it closes the object (not the descriptor) and opens another."""
    global stdin_ahead
    from multiprocessing import util
    stdin_ahead = None
    util._close_stdin = _close_stdin_orig


def finish_setup(ctx, applied, status_fd, stdin_taken):
    """The last steps of a child's setup, once its descriptors are installed.

    ctx: the request's context part (applied: the one the spare applied
    ahead); status_fd: the request's connection, where report_exit writes;
    stdin_taken: a requester's descriptor took the number of stdin_ahead.
    """
    global status
    status = (os.getpid(), status_fd)
    if stdin_taken:
        drop_stdin_ahead()
    if ctx != applied:
        apply_context(*pickle.loads(ctx))
    # Blocked since the zygote: a Ctrl-C that came while this copy was
    # being made is delivered now (see end_setup).
    _signal.pthread_sigmask(_signal.SIG_UNBLOCK, (_signal.SIGINT,))


# Ctrl-C while a child is being made
# ----------------------------------
# SIGINT is blocked since the zygote (zygote_server.main), so that a Ctrl-C
# sent while a copy is being made is kept pending, not discarded by the
# zygote's SIG_IGN. finish_setup unblocks it once the child's handler is in
# place: a pending one is raised there. From then until the process object
# is unpickled (its modules and the main module imported, as a spawned
# child does after its interpreter starts), a Ctrl-C interrupts that work,
# as in a spawned child; but Python runs the handler in whatever Python
# code is running, and during imports that is often a weakref callback of
# importlib's module locks, where the KeyboardInterrupt is printed and
# ignored (a Ctrl-C was lost so in ~1 start of 40 on 3.13, and the child ran
# on). So the handler of that stretch also notes the Ctrl-C, and
# end_setup raises it again if it was swallowed, before the target runs.

_sigint_seen = False


def _sigint_while_preparing(signum, frame):
    global _sigint_seen
    _sigint_seen = True
    raise KeyboardInterrupt


def end_setup():
    """From spawn._main, once the process object is unpickled: Python's own
    SIGINT handler from here on, and a Ctrl-C of the preparation raised now,
    also if something swallowed its KeyboardInterrupt."""
    if _signal.getsignal(_signal.SIGINT) is _sigint_while_preparing:
        # signal() runs a handler pending from before first: that raises here too.
        _signal.signal(_signal.SIGINT, _signal.default_int_handler)
        if _sigint_seen:
            raise KeyboardInterrupt


def apply_context(cwd, env, stdout_tty, sigint_ignored):
    """Take on a request's cwd, environment (None: leave it), stdout buffering
    and SIGINT disposition."""
    # The zygote ignores SIGINT (Ctrl-C belongs to the program). A child gets
    # a handler that raises KeyboardInterrupt (Python's own from end_setup
    # on), as a fresh interpreter does, unless its parent ignores SIGINT
    # (`prog &` in a script): an exec'd child would inherit that, and so
    # does this one. (_signal: the signal module's wrapper converts to
    # enums, ~0.1 ms in a fresh fork.)
    if not sigint_ignored:
        _signal.signal(_signal.SIGINT, _sigint_while_preparing)
    os.chdir(cwd)
    if env is not None:
        set_environ(env)
    stream = sys.stdout
    if stream is not None and getattr(stream, 'line_buffering', stdout_tty) != stdout_tty:
        try:
            stream.reconfigure(line_buffering=stdout_tty)
        except (OSError, ValueError, AttributeError):
            pass


def set_environ(env):
    """Make os.environ (and the C environment) `env` (bytes to bytes), touching only what differs.

    Compared against CPython's own store (bytes on POSIX) with plain dict
    lookups: os.environb's mapping methods encode every key (~0.1 ms here).
    """
    current = os.environb
    data = getattr(os.environ, '_data', None)
    if not (isinstance(data, dict) and isinstance(next(iter(data), b''), bytes)):
        data = dict(current)
    elif data == env:
        return
    for key in [k for k in data if k not in env]:
        del current[key]
    for key, value in env.items():
        if data.get(key) != value:
            current[key] = value


left_behind = None      # in a child: the zygote's _Server, kept from closing descriptors
_FD_END = 1 << 30        # above any descriptor number (close_range takes the range as given)


def close_fds_except(keep):
    """Close every descriptor above 2 that is not in keep."""
    low = 3
    for fd in sorted(keep):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, _FD_END)


def install_fds(fds, targets, status):
    """Put fds[i] at targets[i], when the descriptors open are 0-2, fds and status only.

    status goes above every target (close-on-exec); returns its number.
    """
    top = max([2, *targets, *fds, status]) + 1
    import fcntl
    status_moved = fcntl.fcntl(status, fcntl.F_DUPFD_CLOEXEC, top)
    os.close(status)
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
    return status_moved


def run(data_fd, tracker_fd):
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
        report_exit(code & 0xff)
        os._exit(code & 0xff)


status = None      # (pid, fd): the child's request connection (set by finish_setup)


def report_exit(code):
    """Send the requester the exit status: it waits on the pidfd, not for the zygote's reap.

    Only from the process the request started: a copy forked by user code
    that returns here has its own parent.
    """
    if status is not None and status[0] == os.getpid():
        try:
            os.write(status[1], _EXIT_0 if code == 0 else pickle.dumps({'exitcode': code}))
        except OSError:
            pass


_EXIT_0 = pickle.dumps({'exitcode': 0})     # built in the zygote: the usual report costs no pickling

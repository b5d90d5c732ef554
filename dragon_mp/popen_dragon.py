"""Popen for dragon_mp processes: the parent side of a start.

Two ways to start a child, with the same behaviour:

- by the run's zygote (dragon_mp.zygote), the default: a process that never
  loads Go forks the child, which installs this process's descriptors, cwd
  and environment and runs the same entry as an exec'd child (a few ms
  instead of an interpreter start). The zygote is the child's real parent:
  it reaps it and sends the exit code on the request's connection, which
  this Popen keeps. The child sends its own exit code there first, just
  before it exits, so a wait ends when the pidfd says the process is gone,
  not one turn of the zygote's loop later. The sentinel is a pidfd of the
  child (sent by the zygote), signals go through pidfd_send_signal, and the
  zygote SIGKILLs the child when this process exits (SIGKILL included).
- by exec, when the zygote cannot be used (DRAGON_MP_ZYGOTE=0, it could not
  be started, or a request failed): the Go process manager forks and execs
  a fresh interpreter (from one OS thread that never exits, so
  PR_SET_PDEATHSIG ties the child to this process and a SIGKILLed parent
  takes its children with it). The pidfd it returns is the sentinel.

Either way the sentinel becomes readable when the child exits, so
`connection.wait` and selectors work on it, and `pid` is the child's real pid.

Either way the Go core watches the child's pid (gocore/events: eBPF when it
loads, else /proc, the memory cgroup and the kernel log), and when the exit
status is first known `exit_reason` is set from it: why the child ended
("killed by SIGKILL from pid 1234 (bash)"), None for an exit with code 0.
"""

import json
import os
import pickle
import select
import signal
import socket
import threading
import time

from multiprocessing import util
from multiprocessing.context import set_spawning_popen

from . import _core, _runtime, reduction, spawn, zygote

__all__ = ['Popen']

# Blocking waits are sliced so a KeyboardInterrupt is seen promptly.
WAIT_SLICE = 0.1


class _DupFd:
    """An fd passed to the child under its own number (see duplicate_for_child)."""

    def __init__(self, fd):
        self.fd = fd

    def detach(self):
        return self.fd


class Popen:
    method = 'dragon'
    DupFd = _DupFd

    def __init__(self, process_obj):
        util._flush_std_streams()
        self.returncode = None
        self.exit_reason = None         # set with a non-zero returncode (see _ended)
        self.finalizer = None
        self._handle = None
        self._conn = None
        self._early_exitcode = None    # the child's report read with the zygote's reply
        self._poller = None            # poll()'s poller of the sentinel (forked children)
        self._lock = threading.Lock()
        self._fds = []
        self._launch(process_obj)

    def duplicate_for_child(self, fd):
        """Pass fd to the child under the same number (used while pickling)."""
        self._fds.append(fd)
        return fd

    def _launch(self, process_obj):
        # Share this process's resource tracker with the child, as stdlib's
        # spawn does, so a SharedMemory attached in the child is not unlinked
        # by a tracker of the child's own when the child exits.
        tracker_fd = _runtime.resource_tracker_fd()
        self._fds.append(tracker_fd)
        prep_data = spawn.get_preparation_data(process_obj._name)
        set_spawning_popen(self)
        try:
            # Pickle before starting anything: an unpicklable target fails
            # here, with nothing to clean up.
            dumps = reduction.ForkingPickler.dumps
            data = spawn.pack_data(dumps(prep_data), dumps(process_obj))
        finally:
            set_spawning_popen(None)

        data_fd = max([2] + self._fds) + 1
        main_path = prep_data.get('init_main_from_path')
        for start in (self._start_by_zygote, self._start_by_exec):
            # A fresh pipe per attempt: a child of a failed attempt must
            # never read the data meant for the one that runs.
            child_r, parent_w = os.pipe()
            try:
                # The data goes in before the start, as much as the pipe
                # holds: the child reads it at once instead of waiting until
                # this process is scheduled again after the start's reply.
                ahead = _write_ahead(parent_w, data)
                started = start(child_r, data_fd, tracker_fd, main_path)
            except BaseException:
                os.close(parent_w)
                raise
            finally:
                os.close(child_r)
            if started:
                break
            os.close(parent_w)
        if self._conn is not None:
            self.finalizer = util.Finalize(self, _release_forked,
                                           (self._conn, self.sentinel, parent_w, self.pid))
        else:
            self.finalizer = util.Finalize(self, _release, (self._handle, self.sentinel, parent_w))
        if ahead < len(data):
            with open(parent_w, 'wb', closefd=False) as f:
                f.write(data[ahead:])

    def _start_by_exec(self, child_r, data_fd, tracker_fd, main_path=None):
        """Start the child as a fresh interpreter exec'd by the Go process manager."""
        files = [0, 1, 2] + [-1] * (data_fd - 2)
        for fd in self._fds:
            files[fd] = fd
        files[data_fd] = child_r
        spec = {'argv': spawn.get_command_line(data_fd, tracker_fd),
                'env': _runtime.child_environment(),
                'files': files, 'kill_with_parent': True}
        self._handle = _runtime.start_process(spec)
        gc = _core.gocore()
        self.pid = _core.call(gc.ProcPid, self._handle)
        self.sentinel = _core.call(gc.ProcPidFD, self._handle)
        return True

    def _start_by_zygote(self, child_r, data_fd, tracker_fd, main_path):
        """Start the child as a fork of the run's zygote; False: use exec instead."""
        if not zygote.enabled():
            return False
        runid = _runtime.runid()
        name = zygote.address(runid)
        if name is None:
            return False
        targets = [fd for fd in (0, 1, 2) if _is_open(fd)]
        for fd in self._fds:
            if fd not in targets:
                targets.append(fd)
        fds = targets + [child_r]
        targets = targets + [data_fd]
        env = _environ_bytes()
        env[os.fsencode(_runtime.ENV_RUN)] = os.fsencode(runid)
        ctx = zygote.context(os.getcwd(), env, 1 in targets and os.isatty(1),
                             signal.getsignal(signal.SIGINT) == signal.SIG_IGN)
        try:
            self.pid, self.sentinel, self._conn, self._early_exitcode = zygote.request(
                name, fds, targets, ctx, data_fd, tracker_fd, main_path)
        except OSError:
            return False
        # The zygote is its parent; the Go core watches it all the same
        # (ProcStart does that for an exec'd child).
        _core.gocore().ProcWatch(self.pid)
        return True

    def poll(self, flag=os.WNOHANG):
        if self.returncode is None:
            if flag == os.WNOHANG and self._conn is not None:
                # Fast path: stdlib's Process.start() and active_children()
                # poll every live child (multiprocessing.process._cleanup),
                # so with a thousand children this runs a thousand times a
                # start. One poll(2) on a poller made once: ~1 us, where
                # _wait's general path (a deadline, a poller per call) cost
                # ~15 us, 15 ms a start at 1,000 live children (issue 17).
                poller = self._poller
                if poller is None:
                    poller = self._poller = select.poll()
                    poller.register(self.sentinel, select.POLLIN)
                try:
                    ready = poller.poll(0)
                except RuntimeError:
                    # Another thread is inside this poller's poll() (a Pool's
                    # handler thread polls its workers too): a poller of our own.
                    fresh = select.poll()
                    fresh.register(self.sentinel, select.POLLIN)
                    ready = fresh.poll(0)
                if not ready:
                    return None
            self._wait(0 if flag == os.WNOHANG else None)
        return self.returncode

    def wait(self, timeout=None):
        if self.returncode is None:
            self._wait(timeout)
        return self.returncode

    def _wait(self, timeout):
        if self._conn is not None:
            return self._wait_forked(timeout)
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0)
        gc = _core.gocore()
        while True:
            left = WAIT_SLICE if deadline is None else min(WAIT_SLICE, deadline - time.monotonic())
            try:
                code = _core.call(gc.ProcWait, self._handle, int(max(left, 0) * 1e9))
                with self._lock:
                    self._ended(code)
                return
            except TimeoutError:
                if deadline is not None and time.monotonic() >= deadline:
                    return

    def _wait_forked(self, timeout):
        # Once the pidfd says the process is gone, the first exit status on
        # the connection is the child's own report, or, for a child that
        # could not report (a signal, os._exit), the zygote's (the real
        # parent reaps it, sends its status, then closes the connection).
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0)
        if not zygote.readable(self.sentinel, timeout):
            return
        with self._lock:
            if self.returncode is not None:
                return
            if self._early_exitcode is not None:
                self._ended(self._early_exitcode)
                return
            try:
                msg = self._conn.recv(4096, socket.MSG_DONTWAIT)
            except BlockingIOError:
                left = None if deadline is None else max(deadline - time.monotonic(), 0)
                if not zygote.readable(self._conn.fileno(), left):
                    return         # the zygote has not reaped it yet
                msg = self._recv_status()
            except OSError:
                msg = b''
            if msg:
                self._ended(pickle.loads(msg)['exitcode'])
                return
            # The zygote died before reporting; PR_SET_PDEATHSIG has SIGKILLed
            # the child (or it ended just before). Its status is lost.
            self._ended(-signal.SIGKILL)

    def _ended(self, code):
        """Set the exit status, once, and why it ended (under self._lock).

        The reason is taken now, not when asked: the Go core forgets the pid
        once it has answered, so nothing piles up for children nobody asks
        about.
        """
        if self.returncode is not None:
            return
        reason = json.loads(_core.call(_core.gocore().ProcExitReason, self.pid, int(code)))
        self.exit_reason = reason['text'] if code != 0 else None
        self.returncode = code

    def _recv_status(self):
        try:
            return self._conn.recv(4096)
        except OSError:
            return b''

    def _send_signal(self, sig):
        if self.returncode is None:
            if self._conn is not None:
                try:
                    signal.pidfd_send_signal(self.sentinel, int(sig))
                except ProcessLookupError:
                    pass
                return
            _core.call(_core.gocore().ProcSignal, self._handle, int(sig))

    def terminate(self):
        self._send_signal(signal.SIGTERM)

    def kill(self):
        self._send_signal(signal.SIGKILL)

    def close(self):
        if self.finalizer is not None:
            self.finalizer()


def _release(handle, sentinel, parent_w):
    for fd in (sentinel, parent_w):
        try:
            os.close(fd)
        except OSError:
            pass
    try:
        _core.call(_core.gocore().ProcRelease, handle)
    except Exception:
        pass


def _release_forked(conn, sentinel, parent_w, pid):
    conn.close()
    try:
        _core.gocore().ProcForget(pid)      # nothing if its reason was taken
    except Exception:
        pass
    for fd in (sentinel, parent_w):
        try:
            os.close(fd)
        except OSError:
            pass


def _write_ahead(fd, data):
    """Write what the pipe takes without blocking; returns how much."""
    os.set_blocking(fd, False)
    try:
        return os.write(fd, data)
    except BlockingIOError:
        return 0
    finally:
        os.set_blocking(fd, True)


def _environ_bytes():
    """A copy of the environment as bytes to bytes."""
    data = getattr(os.environ, '_data', None)      # CPython's own store, bytes on POSIX
    if isinstance(data, dict) and isinstance(next(iter(data), b''), bytes):
        return data.copy()
    return dict(os.environb)


def _is_open(fd):
    import fcntl
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
        return True
    except OSError:
        return False

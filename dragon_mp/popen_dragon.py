"""Popen for dragon_mp processes: the parent side of a start.

The Go process manager forks and execs a fresh interpreter (from one OS
thread that never exits, so PR_SET_PDEATHSIG ties the child to this process
and a SIGKILLed parent takes its children with it). The pidfd it returns is
the process sentinel: it becomes readable when the child exits, so
`connection.wait` and selectors work on it.
"""

import io
import os
import signal

from multiprocessing import util
from multiprocessing.context import set_spawning_popen

from . import _core, _runtime, reduction, spawn

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
        self.finalizer = None
        self._handle = None
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
        fp = io.BytesIO()
        set_spawning_popen(self)
        try:
            # Pickle before starting anything: an unpicklable target fails
            # here, with nothing to clean up.
            reduction.dump(prep_data, fp)
            reduction.dump(process_obj, fp)
        finally:
            set_spawning_popen(None)

        data_fd = max([2] + self._fds) + 1
        files = [0, 1, 2] + [-1] * (data_fd - 2)
        for fd in self._fds:
            files[fd] = fd
        child_r, parent_w = os.pipe()
        try:
            files[data_fd] = child_r
            spec = {'argv': spawn.get_command_line(data_fd, tracker_fd),
                    'env': _runtime.child_environment(),
                    'files': files, 'kill_with_parent': True}
            self._handle = _runtime.start_process(spec)
            gc = _core.gocore()
            self.pid = _core.call(gc.ProcPid, self._handle)
            self.sentinel = _core.call(gc.ProcPidFD, self._handle)
        except BaseException:
            os.close(parent_w)
            raise
        finally:
            os.close(child_r)
        self.finalizer = util.Finalize(self, _release, (self._handle, self.sentinel, parent_w))
        with open(parent_w, 'wb', closefd=False) as f:
            f.write(fp.getbuffer())

    def poll(self, flag=os.WNOHANG):
        if self.returncode is None:
            self._wait(0 if flag == os.WNOHANG else None)
        return self.returncode

    def wait(self, timeout=None):
        if self.returncode is None:
            self._wait(timeout)
        return self.returncode

    def _wait(self, timeout):
        import time
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0)
        gc = _core.gocore()
        while True:
            left = WAIT_SLICE if deadline is None else min(WAIT_SLICE, deadline - time.monotonic())
            try:
                self.returncode = _core.call(gc.ProcWait, self._handle, int(max(left, 0) * 1e9))
                return
            except TimeoutError:
                if deadline is not None and time.monotonic() >= deadline:
                    return

    def _send_signal(self, sig):
        if self.returncode is None:
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

r"""ProcessGroup: start, watch, restart and stop a group of processes as one.

The names and semantics follow DragonHPC's dragon.native.process_group
(add_process, init, start, join, stop, close, puids, exit_status). In a
multi-node run members are placed by their template's policy, else the
group's, else round-robin over the nodes (dragon_mp.placement), executables
as well as Python targets. Unlike DragonHPC, the group is managed by a thread of the process that
made it, not by a manager process: a ProcessGroup cannot be pickled to
another process, and its members die with the process that started them.

State machine (ProcessGroup.state):

    Idle --start()--> Running --(every member exited, stop(), walltime)--> Idle
      \                  \--(a member could not be restarted)--> Error
       \--start() failed (nothing left running)--> Error

The watcher thread waits on every member's sentinel (a pidfd). A member that
exits is recorded in exit_status; with restart=True, and until stop() or
stop_restart(), it is replaced by a new process from the same template.
stop(), and the walltime elapsing, send SIGTERM to every member, then SIGKILL
to those still alive after the grace period (`patience`).
"""

import collections
import enum
import os
import signal
import threading
import time

from multiprocessing import util
from multiprocessing.connection import wait as wait_any

from .. import _runtime
from .process import ProcessTemplate, _Member

__all__ = ['ProcessGroup', 'State', 'Pipes']

# Default grace period between SIGTERM and SIGKILL, in seconds (DragonHPC's patience).
PATIENCE = 5.0

# Threads that start a multi-node group's executables at once (see _spawn_all).
STARTERS = 16


class State(str, enum.Enum):
    """A group's state; each compares equal to DragonHPC's name for it."""
    IDLE = 'Idle'
    RUNNING = 'Running'
    ERROR = 'Error'

    def __str__(self):
        return self.value


# This process's ends of a member's PIPE streams: binary file objects or None.
Pipes = collections.namedtuple('Pipes', 'stdin stdout stderr')


class ProcessGroup:
    """A group of processes started from templates, managed together.

    restart: replace members that exit until stop() or stop_restart().
    walltime: seconds after start() at which the group is stopped.
    policy: the placement of members whose template has no policy.
    """

    def __init__(self, restart=False, walltime=None, policy=None):
        if walltime is not None and walltime <= 0:
            raise ValueError(f'walltime must be positive, not {walltime!r}')
        self.restart = restart
        self.walltime = walltime
        self.policy = policy
        self._templates = []        # (nproc, template)
        self._cond = threading.Condition()
        self._state = State.IDLE
        self._initialized = False
        self._closed = False
        self._slots = []            # per member: its template, then its current _Member or None
        self._live = []
        self._exited = []           # (puid, exit code) of every process that has exited
        self._reasons = []          # (puid, why it ended or None), in the same order
        self._pipes = {}            # puid -> Pipes of every process started
        self._restarts = 0
        self._restarting = False
        self._kill_at = None        # monotonic time of the SIGKILL of a stop under way
        self._deadline = None       # monotonic time the walltime elapses
        self._error = None
        self._watcher = None
        self._wake_r = self._wake_w = None
        self._finalizer = None

    # -- setting up ---------------------------------------------------------

    def add_process(self, nproc, template):
        """Add nproc members started from template (before init())."""
        self._check_open()
        if self._initialized:
            raise RuntimeError('add_process() must come before init()')
        if not isinstance(template, ProcessTemplate):
            raise TypeError(f'template must be a ProcessTemplate, not {template!r}')
        if not isinstance(nproc, int) or nproc < 1:
            raise ValueError(f'nproc must be a positive int, not {nproc!r}')
        self._templates.append((nproc, template))

    def init(self):
        """Make the group ready to start (joins or starts this process's run)."""
        self._check_open()
        if self._initialized:
            raise RuntimeError('the group is initialized already')
        _runtime.current()
        self._wake_r, self._wake_w = os.pipe()
        self._initialized = True
        # At interpreter exit, before multiprocessing joins the non-daemonic
        # children (Python members), the group is stopped and closed.
        self._finalizer = util.Finalize(None, _close_at_exit, (self,), exitpriority=10)

    def start(self):
        """Start every member. A missing executable raises FileNotFoundError
        before anything starts (the state stays Idle); a member that fails to
        start later kills the ones already started, and the state is Error."""
        self._check_open()
        if not self._initialized:
            raise RuntimeError('call init() before start()')
        with self._cond:
            if self._state is State.RUNNING:
                raise RuntimeError('the group is running; join() or stop() it first')
        self._reap_watcher()
        with self._cond:
            self._exited, self._reasons, self._restarts = [], [], 0
            self._error, self._kill_at = None, None
            self._restarting = self.restart
        # Every executable is checked before anything starts.
        paths = {id(t): t.resolve() for _, t in self._templates if not t.is_python}
        self._slots = [(t, paths.get(id(t))) for n, t in self._templates for _ in range(n)]
        self._live = [None] * len(self._slots)
        try:
            self._spawn_all()
        except BaseException as e:
            self._abort(e)
            raise
        with self._cond:
            self._state = State.RUNNING
            if self.walltime is not None:
                self._deadline = time.monotonic() + self.walltime
        self._watcher = threading.Thread(target=self._watch, name='ProcessGroup-watcher', daemon=True)
        self._watcher.start()

    def _spawn_all(self):
        """Start every slot, in order. In a multi-node run the executables
        start first, concurrently (STARTERS threads): a start on another node
        waits for a round trip to its agent, and those waits overlap; then
        the Python members, one after the other from this thread."""
        execs = [i for i, (t, _) in enumerate(self._slots) if not t.is_python]
        if not (_runtime.multi_node() and len(execs) > 1):
            for i, (template, path) in enumerate(self._slots):
                self._live[i] = self._spawn(template, path)
            return
        import concurrent.futures
        with concurrent.futures.ThreadPoolExecutor(min(STARTERS, len(execs)),
                                                   thread_name_prefix='ProcessGroup-start') as ex:
            futures = {ex.submit(self._spawn, *self._slots[i]): i for i in execs}
            error = None
            for f in concurrent.futures.as_completed(futures):
                try:
                    self._live[futures[f]] = f.result()
                except BaseException as e:       # the first is raised once all are back
                    error = error or e
            if error is not None:
                raise error
        for i, (template, path) in enumerate(self._slots):
            if template.is_python:
                self._live[i] = self._spawn(template, path)

    def _spawn(self, template, path):
        m = _Member(template, template.policy or self.policy, path)
        self._pipes[m.pid] = Pipes(*m.pipes)
        return m

    def _abort(self, error):
        """A start failed: kill and reap what started, then state Error."""
        started = [m for m in self._live if m is not None]
        for m in started:
            m.send_signal(signal.SIGKILL)
        for m in started:
            while m.wait() is None:
                pass
            self._exited.append((m.pid, m.returncode))
            self._reasons.append((m.pid, m.exit_reason))
            m.release()
        self._live = [None] * len(self._slots)
        with self._cond:
            self._error = error
            self._state = State.ERROR
            self._cond.notify_all()

    # -- waiting and stopping -----------------------------------------------

    def join(self, timeout=None):
        """Wait until every member has exited (with restart=True: until the
        group is stopped). Raises TimeoutError if timeout elapses first, as
        DragonHPC's does."""
        self._check_open()
        with self._cond:
            if not self._cond.wait_for(lambda: self._state is not State.RUNNING, timeout):
                raise TimeoutError(f'the group is still running after {timeout} s')
        self._reap_watcher()

    def stop(self, patience=PATIENCE):
        """SIGTERM every member, SIGKILL those still alive after `patience`
        seconds; returns once all have exited. Restarting ends."""
        self._check_open()
        self._begin_stop(patience)
        self.join()

    def stop_restart(self):
        """Stop replacing members that exit; join() then waits for the current ones."""
        with self._cond:
            self._restarting = False
        self._wake()

    def send_signal(self, sig):
        """Send sig to every live member."""
        for m in self._live_members():
            m.send_signal(sig)

    def terminate(self):
        """SIGTERM every live member (restarting ends first)."""
        self.stop_restart()
        self.send_signal(signal.SIGTERM)

    def kill(self):
        """SIGKILL every live member (restarting ends first)."""
        self.stop_restart()
        self.send_signal(signal.SIGKILL)

    def close(self, patience=PATIENCE):
        """Stop the group if it runs, then free everything it holds (pipes
        included). The group cannot be used afterwards."""
        if self._closed:
            return
        if self._initialized:
            self.stop(patience)
            for pipes in self._pipes.values():
                for f in pipes:
                    if f is not None:
                        f.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._finalizer.cancel()
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- what it looks like ------------------------------------------------

    @property
    def state(self):
        """State.IDLE, State.RUNNING or State.ERROR (str-valued: 'Idle', ...)."""
        return self._state

    @property
    def puids(self):
        """The process ids (pids) of the members running now."""
        return [m.pid for m in self._live_members()]

    @property
    def exit_status(self):
        """(puid, exit code) of every process of the group that has exited, in
        order of exit; an exit code -N means signal N ended it."""
        with self._cond:
            return list(self._exited)

    @property
    def exit_reasons(self):
        """(puid, reason) of every process of the group that has exited, in the
        order of exit_status: why it ended in words ("exited 3", "killed by
        SIGKILL from pid 1234 (bash)", "killed by the OOM killer (...)", "its
        node n2 was lost"), None for exit code 0 (Process.exit_reason)."""
        with self._cond:
            return list(self._reasons)

    @property
    def restarts(self):
        """How many times a member has been replaced since start()."""
        return self._restarts

    @property
    def error(self):
        """What put the group in the Error state (an exception), or None."""
        return self._error

    def pipes(self, puid):
        """Pipes(stdin, stdout, stderr) of process puid: this process's ends of
        its PIPE streams (binary file objects, None for a stream that is not a
        PIPE). They stay open after the process exits, until close() or until
        you close them (do, for the exited processes of a long restarting
        group). A pid the kernel reused names the latest process."""
        try:
            return self._pipes[puid]
        except KeyError:
            raise KeyError(f'no process {puid} in this group') from None

    def __repr__(self):
        return f'<ProcessGroup {self._state.value} members={len(self._slots)} restart={self.restart}>'

    # -- the watcher --------------------------------------------------------

    def _live_members(self):
        with self._cond:
            return [m for m in self._live if m is not None]

    def _check_open(self):
        if self._closed:
            raise ValueError('the ProcessGroup is closed')

    def _wake(self):
        if self._wake_w is not None and not self._closed:
            os.write(self._wake_w, b'x')

    def _begin_stop(self, patience):
        with self._cond:
            self._restarting = False
            if self._state is not State.RUNNING or self._kill_at is not None:
                return
            self._kill_at = time.monotonic() + patience
        self.send_signal(signal.SIGTERM)
        self._wake()

    def _reap_watcher(self):
        w = self._watcher
        if w is not None and w is not threading.current_thread():
            w.join()
            self._watcher = None

    def _watch(self):
        """Runs until every member has exited; restarts and stops as told."""
        while True:
            with self._cond:
                live = {m.sentinel: i for i, m in enumerate(self._live) if m is not None}
                if not live:
                    self._deadline = self._kill_at = None
                    self._state = State.IDLE if self._error is None else State.ERROR
                    self._cond.notify_all()
                    return
                wake_at = min((t for t in (self._deadline, self._kill_at) if t is not None), default=None)
            timeout = None if wake_at is None else max(wake_at - time.monotonic(), 0)
            ready = wait_any(list(live) + [self._wake_r], timeout)
            if self._wake_r in ready:
                os.read(self._wake_r, 4096)
            now = time.monotonic()
            if self._deadline is not None and now >= self._deadline:
                self._deadline = None
                self._begin_stop(PATIENCE)
            if self._kill_at is not None and now >= self._kill_at:
                self.send_signal(signal.SIGKILL)
                with self._cond:
                    self._kill_at = now + PATIENCE      # again, should one have been restarting
            for fd in ready:
                if fd in live:
                    self._reap(live[fd])

    def _reap(self, i):
        m = self._live[i]
        if m.wait() is None:
            return              # readable a moment before its status: seen next turn
        m.release()
        with self._cond:
            self._exited.append((m.pid, m.returncode))
            self._reasons.append((m.pid, m.exit_reason))
            self._live[i] = None
            again = self._restarting
        if not again:
            return
        try:
            new = self._spawn(*self._slots[i])
        except Exception as e:
            with self._cond:
                self._error = e
                self._restarting = False
            self._begin_stop(PATIENCE)
            return
        with self._cond:
            self._live[i] = new
            self._restarts += 1
            if not self._restarting:        # a stop began meanwhile: it missed this one
                new.send_signal(signal.SIGTERM)


def _close_at_exit(group):
    try:
        group.close()
    except Exception:
        pass

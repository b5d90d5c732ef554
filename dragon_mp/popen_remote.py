"""Popen for a process placed on another node of a multi-node run.

The parent pickles the preparation data and the Process object (as for a
local start) into a channel of its own node, which every node can address,
and asks the target node's agent to start a fresh interpreter there
(`child_main`); the child reads its process from the channel and runs it
with spawn semantics. Its standard streams are its node agent's, which the
launcher forwards. The target agent is the child's real parent: it reaps it
and sends the exit code to a channel of this node that the start request
names, so nothing here waits on the other node. One watcher thread per
process (_ExitWatcher) takes the codes of all its remote children from that
channel, each tagged with its child (or, if a child's node is lost, calls
the child killed) and then closes the write end of a pipe whose read end is
the child's `sentinel`, so `connection.wait` works on it as on a local
process. RemoteChild is that mechanism for any argv (ProcessGroup's
executables on other nodes); Popen builds the argv of a Python child.
"""

import io
import itertools
import pickle
import os
import signal
import sys
import threading

from multiprocessing import util
from multiprocessing.context import set_spawning_popen

from . import _core, _runtime, reduction, spawn

__all__ = ['Popen', 'RemoteChild', 'child_main']

WAIT_SLICE = 0.1       # s: how often the watcher looks whether the child's node is lost


class RemoteChild:
    """A process started on another node by its agent, from argv, env (a list
    of 'K=V') and a working directory: pid (on its node), sentinel,
    returncode, poll, wait, signals. Its node's run environment is put over
    env there; its standard streams are its node agent's."""

    def __init__(self, node, argv, env, cwd=None):
        import json
        self.returncode = None
        self.exit_reason = None         # why it ended (Process.exit_reason), with a non-zero code
        self.node = node
        self._exited = threading.Event()
        self.sentinel, self._sentinel_w = os.pipe()
        # Registered before the start: the exit code may come back at once.
        watcher, tag = _register(self)
        spec = {'argv': argv, 'env': env, 'dir': cwd if cwd is not None else os.getcwd(),
                'notify': watcher.address, 'notify_tag': tag}
        gc = _core.gocore()
        try:
            self._handle = _core.call(gc.RemoteProcStart, node, json.dumps(spec))
        except BaseException:
            _forget(watcher, tag)
            os.close(self.sentinel)
            os.close(self._sentinel_w)
            raise
        self.pid = _core.call(gc.RemoteProcPid, node, self._handle)
        self.finalizer = util.Finalize(self, _release, (node, self._handle, self.sentinel))

    def _ended(self, code, reason=None):
        """Called once, by the exit watcher: code is the exit code, or -SIGKILL for a
        lost node; reason says why in words (its node's tracer's), None for 0."""
        self.exit_reason = reason if code != 0 else None
        self.returncode = code
        os.close(self._sentinel_w)      # the sentinel is ready before wait() returns
        self._exited.set()

    def poll(self, flag=os.WNOHANG):
        if flag == os.WNOHANG:
            return self.returncode if self._exited.is_set() else None
        return self.wait()

    def wait(self, timeout=None):
        self._exited.wait(timeout)
        return self.returncode if self._exited.is_set() else None

    def _send_signal(self, sig):
        if not self._exited.is_set():
            try:
                _core.call(_core.gocore().RemoteProcSignal, self.node, self._handle, int(sig))
            except ConnectionError:
                pass

    def terminate(self):
        self._send_signal(signal.SIGTERM)

    def kill(self):
        self._send_signal(signal.SIGKILL)

    def close(self):
        if self.finalizer is not None:
            self.finalizer()


class _ExitWatcher:
    """The exit codes of this process's children on other nodes, for all of
    them: their agents send "<tag> <code>" to one channel of this node, and
    one thread hands each code to its child (and calls the children of a
    lost node killed). One thread and one wake-up per WAIT_SLICE whatever
    the number of children: a watcher thread per child cost ~24% of a CPU
    for 300 idle children (10,000 wake-ups a second). When no child is left
    the thread ends and the channel goes; the next start makes a new one.
    _lock guards _watcher and every watcher's children (a leaf lock)."""

    def __init__(self):
        from .queues import _Channel
        self._chan = _Channel(0)
        self.address = self._chan._addr
        self.generation = _runtime.generation()
        self.retired = False
        self._children = {}         # tag -> RemoteChild whose exit has not come yet
        self._tags = itertools.count(1)
        self._thread = None         # started with the first child

    def _take(self, tags):
        with _lock:
            return [c for c in (self._children.pop(t, None) for t in tags) if c is not None]

    def _run(self):
        import queue
        gc = _core.gocore()
        while True:
            try:
                tag, code, *reason = self._chan.recv(timeout=WAIT_SLICE).decode().split(' ', 2)
                for child in self._take([int(tag)]):
                    child._ended(int(code), reason[0] if reason else None)
                continue
            except queue.Empty:
                pass
            except Exception:
                # The run is ending: every child went with it.
                with _lock:
                    self.retired = True
                    children, self._children = list(self._children.values()), {}
                for child in children:
                    child._ended(-signal.SIGKILL, 'the run ended')
                return
            chan = None
            with _lock:
                if not self._children:
                    self.retired = True
                    chan, self._chan = self._chan, None
                retired = self.retired
                pending = list(self._children.items())
            if retired:
                return                      # (chan is dropped here, not under the lock)
            lost = {node for node in {c.node for _, c in pending} if gc.NodeLost(node)}
            if lost:
                # The node is lost (or the run ended): its processes went with it.
                for child in self._take([t for t, c in pending if c.node in lost]):
                    child._ended(-signal.SIGKILL, f'its node {_node_name(child.node)} was lost')


_watcher = None
_lock = threading.Lock()


def _node_name(node):
    from . import placement
    names = placement.nodes()
    return names[node] if node < len(names) else f'n{node}'


def _register(child):
    """(this process's _ExitWatcher for the current run, the child's tag)."""
    global _watcher
    while True:
        with _lock:
            w = _watcher
            if w is not None and not w.retired and w.generation == _runtime.generation():
                tag = next(w._tags)
                w._children[tag] = child
                if w._thread is None:
                    w._thread = threading.Thread(target=w._run, daemon=True,
                                                 name='dragon_mp-remote-exits')
                    w._thread.start()
                return w, tag
        new = _ExitWatcher()        # made outside the lock: it calls into Go
        with _lock:
            if _watcher is w:       # (else another start made one first: ours goes)
                _watcher = new


def _forget(w, tag):
    with _lock:
        w._children.pop(tag, None)


class Popen(RemoteChild):
    """multiprocessing's Popen for a Process placed on another node."""
    method = 'dragon'

    def __init__(self, process_obj, node):
        from .queues import _Channel
        util._flush_std_streams()
        prep_data = spawn.get_preparation_data(process_obj._name)
        fp = io.BytesIO()
        set_spawning_popen(self)
        try:
            # Pickle before asking the other node for anything: an
            # unpicklable target fails here, with nothing to undo.
            reduction.dump(prep_data, fp)
            reduction.dump(process_obj, fp)
        finally:
            set_spawning_popen(None)
        channel = _Channel(0)
        channel.send(fp.getvalue())
        addr = channel._reference_for_pickle()      # the child's reference
        argv = _runtime.python_command(
            f'from dragon_mp.popen_remote import child_main; child_main({addr}, {channel._inline})',
            '--multiprocessing-fork')
        super().__init__(node, argv, _runtime.child_environment())

    def duplicate_for_child(self, fd):
        raise ValueError('file descriptors cannot be passed to a process on another node')


def _release(node, handle, sentinel):
    try:
        os.close(sentinel)
    except OSError:
        pass
    try:
        _core.call(_core.gocore().RemoteProcRelease, node, handle)
    except Exception:
        pass


def child_main(addr, inline):
    """Entry of a child started for another node: run the pickled process."""
    from multiprocessing import process
    from .queues import _Channel
    channel = _Channel._attach(addr, inline)
    data = channel.recv()
    del channel
    # parent_process().is_alive() polls this: the write end stays open here,
    # so the parent counts as alive while this process runs.
    parent_sentinel, _keep = os.pipe()
    process.current_process()._inheriting = True
    try:
        from_parent = io.BytesIO(data)
        preparation_data = pickle.load(from_parent)
        spawn.prepare(preparation_data)
        self = pickle.load(from_parent)
    finally:
        del process.current_process()._inheriting
    sys.exit(self._bootstrap(parent_sentinel))

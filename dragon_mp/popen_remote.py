"""Popen for a process placed on another node of a multi-node run.

The parent pickles the preparation data and the Process object (as for a
local start) into a channel of its own node, which every node can address,
and asks the target node's agent to start a fresh interpreter there
(`child_main`); the child reads its process from the channel and runs it
with spawn semantics. Its standard streams are its node agent's, which the
launcher forwards. The target agent is the child's real parent: it reaps it
and sends the exit code to a channel of this node that the start request
names, so nothing here waits on the other node. A watcher thread takes the
code from that channel (or, if the child's node is lost, calls the child
killed) and then closes the write end of a pipe whose read end is the
`sentinel`, so `connection.wait` works on it as on a local process.
"""

import io
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
        from .queues import _Channel
        self.returncode = None
        self.node = node
        self._exited = threading.Event()
        # The target agent sends the exit code here; kept alive until the
        # watcher has it (an address freed earlier could be reused).
        self._exit_chan = _Channel(0)
        spec = {'argv': argv, 'env': env, 'dir': cwd if cwd is not None else os.getcwd(),
                'notify': self._exit_chan._addr}
        gc = _core.gocore()
        self._handle = _core.call(gc.RemoteProcStart, node, json.dumps(spec))
        self.pid = _core.call(gc.RemoteProcPid, node, self._handle)
        self.sentinel, self._sentinel_w = os.pipe()
        self.finalizer = util.Finalize(self, _release, (node, self._handle, self.sentinel))
        self._watcher = threading.Thread(target=self._watch, daemon=True,
                                         name=f'dragon_mp-remote-{node}-{self.pid}')
        self._watcher.start()

    def _watch(self):
        import queue
        gc = _core.gocore()
        while True:
            try:
                self.returncode = int(self._exit_chan.recv(timeout=WAIT_SLICE))
                break
            except queue.Empty:
                pass
            except Exception:
                self.returncode = -signal.SIGKILL     # the run is ending
                break
            if gc.NodeLost(self.node):
                # The node is lost (or the run ended): its processes went with it.
                self.returncode = -signal.SIGKILL
                break
        self._exit_chan = None
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

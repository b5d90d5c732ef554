"""The relay of an executable started on another node with redirected streams.

A member of a ProcessGroup placed on another node is started there by that
node's agent, whose standard streams are the only ones it can give (the
launcher forwards them, labelled by node). When the template asks for more
(PIPE, DEVNULL or a file for a stream), the agent starts this relay instead,
and the relay starts the executable:

1. It opens the streams the executable gets (DEVNULL, a file of that node,
   or one end of an os pipe for a PIPE) and starts it with subprocess, before
   this process has loaded the Go core: the one fork of a process that loads
   Go comes first, so nothing that has loaded it forks. The executable dies
   with the relay (PR_SET_PDEATHSIG), however the relay ends.
2. Signals the relay gets (SIGTERM from stop(), SIGINT, SIGHUP, SIGUSR1/2,
   SIGQUIT) are passed to the executable.
3. It attaches to the run and carries each PIPE between its os pipe and a
   channel of the group's node: stdout and stderr chunk by chunk, then an
   empty message for the end; stdin from the channel, until an empty message.
4. When the executable has exited, it waits until what it sent has arrived on
   the group's node, drops its references to the channels, then ends as the
   executable did (the same exit code, or
   the same signal), so the group sees the executable's status.

The group sees the relay's pid as the member's puid.
"""

import io
import json
import os
import signal
import subprocess
import sys
import threading

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
             signal.SIGQUIT)
CHUNK = 65536


def main(spec_json):
    spec = json.loads(spec_json)
    streams = spec['stdio']             # per stream: None, 'devnull', 'stdout', ['file', path], ['pipe', addr, inline]
    child_ends, ours, opened = [None, None, None], [None, None, None], []
    for i, s in enumerate(streams):
        if s is None:
            continue
        if s == 'devnull':
            child_ends[i] = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            opened.append(child_ends[i])
        elif s == 'stdout':
            child_ends[i] = subprocess.STDOUT
        elif s[0] == 'file':
            flags = os.O_RDONLY if i == 0 else os.O_WRONLY | os.O_CREAT | os.O_APPEND
            child_ends[i] = os.open(s[1], flags | os.O_CLOEXEC, 0o666)
            opened.append(child_ends[i])
        else:
            r, w = os.pipe()
            ours[i], child_ends[i] = (w, r) if i == 0 else (r, w)
            opened.append(child_ends[i])
    try:
        child = subprocess.Popen(spec['argv'], stdin=child_ends[0], stdout=child_ends[1],
                                 stderr=child_ends[2], preexec_fn=_die_with_parent)
    except OSError as e:
        print(f'dragon_mp: cannot start {spec["argv"][0]!r} on this node: {e}', file=sys.stderr,
              flush=True)
        os._exit(127)
    for fd in opened:
        os.close(fd)
    for sig in FORWARDED:
        signal.signal(sig, lambda sig, frame: _forward(child, sig))

    from .. import _runtime
    from ..queues import _Channel
    carriers, chans = [], []
    for i, s in enumerate(streams):
        if isinstance(s, list) and s[0] == 'pipe':
            ch = _Channel._attach(s[1], s[2])
            chans.append(ch)
            t = threading.Thread(target=_to_pipe if i == 0 else _from_pipe, args=(ch, ours[i]),
                                 daemon=True)
            t.start()
            if i != 0:
                carriers.append(t)
    code = child.wait()
    for t in carriers:
        t.join()            # to the end of its pipe: the executable's last output
    _runtime.sync_remote()
    for ch in chans:
        ch._finalizer()     # the references given to this process (os._exit runs no finalizers)
    sys.stdout.flush()
    sys.stderr.flush()
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [-code])
        os.kill(os.getpid(), -code)
    os._exit(code & 0xff)


def _die_with_parent():
    import ctypes
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _forward(child, sig):
    try:
        child.send_signal(sig)
    except ProcessLookupError:
        pass


def _from_pipe(ch, fd):
    """The executable's stdout or stderr to the group: chunks, then b''."""
    try:
        while True:
            data = os.read(fd, CHUNK)
            ch.send(data)
            if not data:
                return
    finally:
        os.close(fd)


def _to_pipe(ch, fd):
    """The group's writes to the executable's stdin, until b'' (or it stops reading)."""
    try:
        while True:
            data = ch.recv()
            if not data:
                return
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
    except (EOFError, OSError):       # the group closed it, or the run is ending
        pass
    finally:
        os.close(fd)


# -- the group's side ---------------------------------------------------------

def start(node, path, template, env, cwd):
    """Start the executable at path on another node, with the template's
    streams: through a relay when one is redirected. Returns (RemoteChild,
    this process's ends of the PIPE streams)."""
    from .. import _core, _runtime
    from ..popen_remote import RemoteChild
    from ..queues import _Channel
    argv = [path] + template.argv_tail
    specs = (template.stdin, template.stdout, template.stderr)
    if all(s is None for s in specs):
        return RemoteChild(node, argv, env, cwd), (None, None, None)
    from .process import DEVNULL, PIPE, STDOUT
    stdio, chans = [None, None, None], [None, None, None]
    for i, s in enumerate(specs):
        if s is None:
            continue
        if s == PIPE:
            chans[i] = _Channel(0)
            stdio[i] = ['pipe', chans[i]._reference_for_pickle(), chans[i]._inline]
        elif s == DEVNULL:
            stdio[i] = 'devnull'
        elif s == STDOUT:
            stdio[i] = 'stdout'
        elif isinstance(s, (str, bytes, os.PathLike)):
            stdio[i] = ['file', os.path.join(cwd, os.fsdecode(os.fspath(s)))]
        else:
            raise ValueError(f'{s!r}: an open file or descriptor cannot be given to a process '
                             f'on another node (node {node}); give a path')
    relay = _runtime.python_command('from dragon_mp.native._relay import main; main(sys.argv[1])',
                                    json.dumps({'argv': argv, 'stdio': stdio}))
    try:
        child = RemoteChild(node, relay, env, cwd)
    except BaseException:
        for ch in chans:            # the references taken for the relay that never came
            if ch is not None:
                _core.call(_core.gocore().ChannelRelease, ch._addr)
        raise
    pipes = [None, None, None]
    for i, ch in enumerate(chans):
        if ch is not None:
            raw = ChannelWriter(ch) if i == 0 else ChannelReader(ch, child._exited)
            pipes[i] = io.BufferedWriter(raw) if i == 0 else io.BufferedReader(raw)
    return child, tuple(pipes)


class ChannelReader(io.RawIOBase):
    """A remote member's stdout or stderr: what its relay sends, to the empty
    message that ends it, or to the member's exit if the relay was killed
    before it could say so (what it sent before is read first)."""

    def __init__(self, ch, exited):
        self._ch, self._exited, self._buf, self._eof = ch, exited, b'', False

    def readable(self):
        return True

    def readinto(self, b):
        import queue
        while not self._buf and not self._eof:
            try:
                self._buf = self._ch.recv(timeout=0.1)
                self._eof = not self._buf
            except queue.Empty:
                if self._exited.is_set():
                    try:
                        self._buf = self._ch.recv(timeout=0)
                        self._eof = not self._buf
                    except queue.Empty:
                        self._eof = True
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self):
        self._ch = None
        super().close()


class ChannelWriter(io.RawIOBase):
    """A remote member's stdin: each write goes to its relay; close() ends it."""

    def __init__(self, ch):
        self._ch = ch

    def writable(self):
        return True

    def write(self, b):
        data = bytes(b)
        if data:
            self._ch.send(data)
        return len(data)

    def close(self):
        if self._ch is not None and not self.closed:
            try:
                self._ch.send(b'')
            except Exception:
                pass        # the run is ending: nobody reads
            self._ch = None
        super().close()

"""ProcessTemplate: what one member of a ProcessGroup runs, and how it is started.

A template names a Python callable, run as a dragon_mp.Process, or an
executable, exec'd with `args` as its arguments. dragon_mp.native.process_group
starts `nproc` members from it; this module holds the template and the
`_Member` that wraps one started process of either kind behind one interface
(pid, sentinel, wait, signal, pipes), so the group's bookkeeping does not care
which kind it holds.

Executables on this node are started by the Go process manager (gocore/proc
through the gopy ProcStart), never by subprocess: this process has loaded Go, and a Go
process must not fork except on the way to an exec, which Go's spawner thread
does. Like every process of the run they are started with PR_SET_PDEATHSIG
(they die with the process that started them, whatever killed it) and carry
DRAGON_MP_RUN, so the run's reaper and dragon-cleanup find them. On another
node, that node's agent starts them (popen_remote.RemoteChild), directly or
through a relay that carries redirected streams (native/_relay.py).
"""

import os
import shutil
import subprocess
import sys

from .. import _core, _runtime, placement

__all__ = ['ProcessTemplate', 'PIPE', 'STDOUT', 'DEVNULL']

# The values of subprocess's constants, as DragonHPC's ProcessTemplate has them.
PIPE = subprocess.PIPE
STDOUT = subprocess.STDOUT
DEVNULL = subprocess.DEVNULL

# How long a wait on one member's exit is sliced (the sentinel of a member
# forked by the zygote can be readable a moment before its status arrives).
_REAP_SLICE = 0.1


class ProcessTemplate:
    """What one member of a ProcessGroup runs.

    target: a Python callable, run in a dragon_mp.Process as target(*args,
    **kwargs); or an executable (str, bytes or os.PathLike): a name without a
    slash is looked up in PATH (the template's env's PATH if it sets one), a
    path with one is taken relative to cwd; `args` are its arguments (argv[1:]).
    cwd: working directory (None: this process's at start()).
    env: a dict of variables added to this process's environment.
    stdin, stdout, stderr: None (this process's own), DEVNULL, PIPE, STDOUT
    (stderr only: where stdout goes), a file path (opened for appending; for
    stdin, for reading), or an open file or descriptor. PIPE gives a binary
    file object per member: ProcessGroup.pipes(puid).
    policy: placement (dragon_mp.placement.Policy) in a multi-node run (the
    group's policy, else the default: round-robin over the nodes). On
    another node, an executable must be at the same path (a shared file
    system, or the same installation); streams left None go to that node's
    agent, which the launcher forwards (``dragon --label`` names the node),
    and PIPE, DEVNULL and file paths go through a relay (native/_relay.py):
    PIPE streams are then file objects over channels. An open file or
    descriptor cannot go to another node (ValueError).
    """

    PIPE = PIPE
    STDOUT = STDOUT
    DEVNULL = DEVNULL

    def __init__(self, target, args=(), kwargs=None, cwd=None, env=None,
                 stdin=None, stdout=None, stderr=None, policy=None):
        self.is_python = callable(target)
        if not self.is_python and not isinstance(target, (str, bytes, os.PathLike)):
            raise TypeError(f'target must be a callable or an executable path, not {target!r}')
        if not self.is_python and kwargs:
            raise ValueError('kwargs are for a Python target; an executable takes args only')
        if stdin == STDOUT or stdout == STDOUT:
            raise ValueError('STDOUT is a value for stderr only')
        self.target = target
        self.args = tuple(args or ())
        self.kwargs = dict(kwargs or {})
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.policy = policy
        if not self.is_python:
            self.argv_tail = [_arg(a) for a in self.args]

    def __repr__(self):
        return f'ProcessTemplate({self.target!r}, args={self.args!r})'

    def resolve(self):
        """The executable's absolute path; FileNotFoundError/PermissionError if
        it cannot be run. Called by ProcessGroup.start() before anything starts."""
        name = os.fsdecode(os.fspath(self.target))
        cwd = os.fsdecode(os.fspath(self.cwd)) if self.cwd is not None else os.getcwd()
        if '/' not in name:
            path = (self.env or {}).get('PATH', os.environ.get('PATH', os.defpath))
            found = shutil.which(name, path=path)
            if found is None:
                raise FileNotFoundError(f'executable {name!r} not found in PATH')
            return os.path.abspath(os.path.join(cwd, found))
        full = os.path.abspath(os.path.join(cwd, name))
        if not os.path.isfile(full):
            raise FileNotFoundError(f'executable {full!r} does not exist')
        if not os.access(full, os.X_OK):
            raise PermissionError(f'{full!r} is not executable')
        return full


def _arg(a):
    if isinstance(a, (str, bytes, os.PathLike)):
        return os.fsdecode(os.fspath(a))
    raise TypeError(f'an executable argument must be str, bytes or os.PathLike, not {a!r}')


class _Member:
    """One started process of a group (one incarnation of a member slot)."""

    def __init__(self, template, policy, path=None):
        self.returncode = None
        self.exit_reason = None     # with a non-zero returncode: why, in words
        self._process = self._remote = None
        if template.is_python:
            self.pipes = _with_stdio(template, lambda fds: self._start_python(template, policy, fds))
        else:
            self.pipes = self._start_exec(template, policy, path)

    def _start_python(self, template, policy, child_fds):
        from ..process import Process
        from multiprocessing import reduction
        # The descriptors travel as DupFd: pickled while the Popen launches,
        # they reach the child under their own numbers (by the zygote or the
        # exec'd interpreter), where _python_main puts them on 0, 1 and 2.
        stdio = [None if fd is None else reduction.DupFd(fd) for fd in child_fds]
        cwd = os.fsdecode(os.fspath(template.cwd)) if template.cwd is not None else None
        p = Process(target=_python_main,
                    args=(template.target, template.args, template.kwargs, cwd, template.env, stdio),
                    policy=policy)
        p.start()
        self._process = p
        self.pid = p.pid
        self.sentinel = p.sentinel

    def _start_exec(self, template, policy, path):
        env = dict(os.environ)
        env.update(template.env or {})
        env[_runtime.ENV_RUN] = _runtime.runid()
        env = [f'{k}={v}' for k, v in env.items()]
        cwd = os.fsdecode(os.fspath(template.cwd)) if template.cwd is not None else os.getcwd()

        def start_on(node):
            if node != placement.this_node():
                from . import _relay
                self._remote, pipes = _relay.start(node, path, template, env, cwd)
                self.pid, self.sentinel = self._remote.pid, self._remote.sentinel
                return pipes
            return _with_stdio(template, start_here)

        def start_here(child_fds):
            files = [i if fd is None else fd for i, fd in enumerate(child_fds)]
            files = [fd if fd != i or _is_open(fd) else -1 for i, fd in enumerate(files)]
            spec = {'argv': [path] + template.argv_tail, 'env': env, 'dir': cwd, 'files': files,
                    'kill_with_parent': True}
            self._handle = _runtime.start_process(spec)
            self.pid = _core.call(_core.gocore().ProcPid, self._handle)
            self.sentinel = _core.call(_core.gocore().ProcPidFD, self._handle)
        return placement.start(policy, start_on)

    def wait(self, timeout=_REAP_SLICE):
        """The exit code (-N: signal N) once the process has exited, else None."""
        if self.returncode is None:
            if self._process is not None:
                self._process.join(timeout)
                self.returncode = self._process.exitcode
            elif self._remote is not None:
                self.returncode = self._remote.wait(timeout)
            else:
                try:
                    self.returncode = _core.call(_core.gocore().ProcWait, self._handle,
                                                 int(timeout * 1e9))
                except TimeoutError:
                    pass
            if self.returncode:
                self.exit_reason = self._reason()
        return self.returncode

    def _reason(self):
        """Why it ended (Process.exit_reason's sentence), once its code is known."""
        if self._process is not None:
            return self._process.exit_reason
        if self._remote is not None:
            return self._remote.exit_reason
        import json
        reason = _core.call(_core.gocore().ProcExitReason, self.pid, int(self.returncode))
        return json.loads(reason)['text']

    def send_signal(self, sig):
        if self.returncode is not None:
            return
        try:
            if self._process is not None:
                self._process._popen._send_signal(sig)
            elif self._remote is not None:
                self._remote._send_signal(sig)
            else:
                _core.call(_core.gocore().ProcSignal, self._handle, int(sig))
        except ProcessLookupError:
            pass

    def release(self):
        """Free the handles of an exited member (its pipes stay open)."""
        if self._process is not None:
            self._process.close()
        elif self._remote is not None:
            self._remote.close()
        else:
            os.close(self.sentinel)
            _core.call(_core.gocore().ProcRelease, self._handle)


def _with_stdio(template, start):
    """start(child descriptors) with the template's streams opened here;
    returns this process's ends of the PIPE streams."""
    child_fds, opened, pipes = _stdio(template)
    try:
        start(child_fds)
    except BaseException:
        for f in pipes:
            if f is not None:
                f.close()
        raise
    finally:
        for fd in opened:
            os.close(fd)
    return pipes


def _stdio(template):
    """(child descriptor or None per stream, descriptors to close after the
    start, this process's PIPE ends as file objects)."""
    child, opened, pipes = [None, None, None], [], [None, None, None]
    try:
        for i, spec in enumerate((template.stdin, template.stdout, template.stderr)):
            if spec is None:
                continue
            if spec == STDOUT:
                child[i] = child[1] if child[1] is not None else 1
            elif spec == DEVNULL:
                child[i] = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                opened.append(child[i])
            elif spec == PIPE:
                r, w = os.pipe()
                ours, theirs = (w, r) if i == 0 else (r, w)
                opened.append(theirs)
                child[i] = theirs
                pipes[i] = open(ours, 'wb' if i == 0 else 'rb')
            elif isinstance(spec, (str, bytes, os.PathLike)):
                flags = os.O_RDONLY if i == 0 else os.O_WRONLY | os.O_CREAT | os.O_APPEND
                cwd = template.cwd if template.cwd is not None else os.getcwd()
                child[i] = os.open(os.path.join(os.fsdecode(os.fspath(cwd)), os.fsdecode(os.fspath(spec))),
                                   flags | os.O_CLOEXEC, 0o666)
                opened.append(child[i])
            elif isinstance(spec, int) and spec >= 0:
                child[i] = spec
            elif hasattr(spec, 'fileno'):
                child[i] = spec.fileno()
            else:
                raise ValueError(f'bad stdio value {spec!r}')
    except BaseException:
        for fd in opened:
            os.close(fd)
        for f in pipes:
            if f is not None:
                f.close()
        raise
    return child, opened, pipes


def _is_open(fd):
    import fcntl
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
        return True
    except OSError:
        return False


def _python_main(target, args, kwargs, cwd, env, stdio):
    """A Python member's entry in its own process: stdio, cwd, env, then the target."""
    fds = [None if d is None else d.detach() for d in stdio]
    for i, fd in enumerate(fds):
        if fd is not None and fd != i:
            os.dup2(fd, i)
    for fd in set(fds) - {None, 0, 1, 2}:
        os.close(fd)
    if fds[0] is not None:
        # stdlib's bootstrap has pointed sys.stdin at /dev/null: give it the stream.
        sys.stdin = open(0, closefd=False)
    if cwd is not None:
        os.chdir(cwd)
    if env:
        os.environ.update(env)
    target(*args, **kwargs)

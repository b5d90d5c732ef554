"""Bringing up and tearing down the nodes of a multi-node run (launcher side).

Which nodes: a hostfile (`--hostfile`, one host per line, `#` comments), or
inside a Slurm allocation the allocation's nodes (`scontrol show hostnames`).
The launcher's host is node 0; when it is not in the list it is added first.

How a node starts (`dragon_mp.node`): over ssh for a hostfile, with one srun
for a whole Slurm allocation, or with any command given as a template
(`--launch 'ssh -p 2222 {host} {command}'`: {host} is the host name,
{command} the node's shell command line, one argument). The sessions carry
the node's configuration in (stdin: run id, identities, peers) and the
output of its processes out; closing a session's stdin ends that node's part
of the run.

The launch tree: the launcher starts at most `fanout` sessions (default 32)
itself, all at once; each of those nodes starts the sessions of its share of
the rest the same way, and so on (split_tree), so 1,000 nodes are two levels
deep and no host runs more than `fanout` launch commands. A node that starts
others relays: their configuration lines go down its sessions, their lines
come up its own, each marked with the node it comes from (`@@dragon_mp FROM
<node> <line>`); a session of its that ends is reported up (ENDED). srun
fans out by itself: a Slurm run is one session.
"""

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time

from . import _core, _runtime, node as node_mod

__all__ = []   # internal: nothing for `from ... import *`

DEFAULT_SSH = 'ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new {host} {command}'
SRUN_NO_CPU_BIND = b'srun: cluster configuration lacks support for cpu binding'
DEFAULT_FANOUT = 32
FROM = (node_mod.MARK + ' FROM ').encode()
BRINGUP_TIMEOUT = float(os.environ.get('DRAGON_MP_BRINGUP_TIMEOUT', 120))


def read_hostfile(path):
    hosts = []
    with open(path) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line:
                hosts.append(line.split()[0])
    if not hosts:
        raise SystemExit(f'dragon: no hosts in {path}')
    return hosts


def slurm_hosts():
    """Host names of the Slurm allocation this process runs in, or None."""
    nodelist = os.environ.get('SLURM_JOB_NODELIST') or os.environ.get('SLURM_NODELIST')
    if not (os.environ.get('SLURM_JOB_ID') or os.environ.get('SLURM_JOBID')) or not nodelist:
        return None
    try:
        r = subprocess.run(['scontrol', 'show', 'hostnames', nodelist], capture_output=True,
                           text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SystemExit(f'dragon: cannot list the nodes of Slurm job '
                         f'{os.environ.get("SLURM_JOB_ID")} ({nodelist}): {e}') from None
    if r.returncode != 0 or not r.stdout.split():
        raise SystemExit(f'dragon: cannot list the nodes of Slurm job '
                         f'{os.environ.get("SLURM_JOB_ID")} ({nodelist}): '
                         f'scontrol: {r.stderr.strip() or "no hosts"}')
    global _allocation
    _allocation = r.stdout.split()
    return list(_allocation)


_allocation = None      # the last slurm_hosts() (Cluster.start must not run commands: Go is loaded)


def slurm_cpus(hosts):
    """{host: CPUs the allocation has on it}, from SLURM_JOB_CPUS_PER_NODE
    ("72(x2),36": counts in the order of SLURM_JOB_NODELIST); {} if unknown."""
    spec = os.environ.get('SLURM_JOB_CPUS_PER_NODE', '')
    counts = []
    for part in filter(None, spec.split(',')):
        m = re.fullmatch(r'(\d+)(?:\(x(\d+)\))?', part.strip())
        if not m:
            return {}
        counts += [int(m[1])] * int(m[2] or 1)
    if len(counts) != len(hosts):
        return {}
    return dict(zip(hosts, counts))


def is_this_host(host, addresses=None):
    """Whether `host` names this machine (addresses: local_addresses(), if known)."""
    names = {socket.gethostname(), socket.getfqdn(), 'localhost'}
    if host in names or host.split('.')[0] in {n.split('.')[0] for n in names}:
        return True
    try:
        ip = socket.gethostbyname(host)
    except OSError:
        return False
    return ip.startswith('127.') or ip in (local_addresses() if addresses is None else addresses)


def local_addresses():
    try:
        out = subprocess.run(['hostname', '-I'], capture_output=True, text=True).stdout
        return set(out.split())
    except OSError:
        return set()


def order_hosts(hosts):
    """Node 0 is this host; the others keep their order."""
    addresses = local_addresses()           # once: a host list may be long
    here = [is_this_host(h, addresses) for h in hosts]
    this = [h for h, mine in zip(hosts, here) if mine]
    others = [h for h, mine in zip(hosts, here) if not mine]
    return [this[0] if this else socket.gethostname()] + others


def node_command(node_arg, run=None):
    """The shell command line that runs dragon_mp.node on a node."""
    # The run id on the command line names the process in ps (and lets
    # cleanup find it) before it has read its configuration.
    argv = _runtime.python_command('from dragon_mp.node import main; sys.exit(main())',
                                   '--node', str(node_arg), '--run', run or _runtime.runid())
    return f'cd {shlex.quote(os.getcwd())} && exec {shlex.join(argv)}'


def split_tree(nodes, fanout):
    """[(child, subtree)]: `nodes` cut into at most `fanout` contiguous groups
    of near-equal size; a group's first node (child) is started by the caller
    and starts the rest of its group (subtree: the child first)."""
    if not nodes:
        return []
    k = max(1, min(fanout, len(nodes)))
    base, extra = divmod(len(nodes), k)
    groups, i = [], 0
    for g in range(k):
        size = base + (g < extra)
        groups.append(nodes[i:i + size])
        i += size
    return [(group[0], group) for group in groups]


def start_subtree(launch, run, base, identities, hosts, nodes, parent, label=False, relay=False):
    """Start the sessions of the launch tree below node `parent`: one per group
    of split_tree(nodes), each sent its group's identities and hosts. `launch`
    holds the parsed template and the fanout; `hosts` maps node (str) -> host."""
    sessions = []
    fanout = launch['fanout']
    for child, subtree in split_tree(nodes, fanout):
        argv = [a.replace('{host}', hosts[str(child)]).replace('{command}', node_command(child, run))
                for a in launch['template']]
        s = Session(argv, subtree, {int(k): v for k, v in hosts.items()}, label, relay=relay)
        s.send({**base, 'identities': {str(i): identities[str(i)] for i in subtree},
                'launch': dict(launch, hosts={str(i): hosts[str(i)] for i in subtree},
                               parent=parent)})
        sessions.append(s)
    return sessions


_out_lock = threading.Lock()        # whole lines on this process's stdout/stderr


def write_line(out, line):
    with _out_lock:
        out.write(line)
        out.flush()


class Session:
    """One launch session: ssh (or a template) for a node and the subtree it
    starts, or srun for many. In a relay (a node that starts others), the
    session's lines go up this node's own stdout/stderr marked FROM their node."""

    def __init__(self, argv, nodes, hosts, label, srun=False, relay=False):
        self.nodes = nodes                  # node indexes this session runs (its subtree)
        self.hosts = hosts                  # node index -> host name
        self.label = label
        self.srun = srun                    # output lines carry srun's "<task>: " label
        self.relay = relay
        self.tasks = {}                     # srun task -> node (from READY)
        self.ready = {}                     # node -> READY fields
        self.peered = set()
        self.ended = {}                     # node -> why, for nodes of the subtree whose session ended
        self.cond = threading.Condition()
        self.exited = None
        import shutil
        exe = shutil.which(argv[0])
        if exe is None:
            raise SystemExit(f'dragon: cannot start nodes: {argv[0]!r} not found on PATH')
        argv = [exe, *argv[1:]]
        in_r, self.stdin = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            spec = {'argv': argv, 'env': [f'{k}={v}' for k, v in os.environ.items()
                                          if k != _runtime.ENV_RUN],
                    'files': [in_r, out_w, err_w],
                    # srun is not killed with the launcher: a SIGKILLed srun gets its step
                    # SIGKILLed at once (every process of it, the nodes' reapers too), which
                    # leaves the nodes' shared memory behind. Alive, srun passes the EOF of
                    # its stdin on to the nodes, which end cleanly, and then exits itself.
                    # Every session runs in a session of its own, so that a terminal's
                    # Ctrl-C (SIGINT to the foreground group) reaches the program, not the
                    # launch commands: the launcher ends the nodes.
                    'kill_with_parent': not srun, 'new_session': True}
            self.handle = _runtime.start_process(spec)
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
        self.readers = [threading.Thread(target=self._forward, args=(fd, stream), daemon=True)
                        for fd, stream in ((out_r, sys.stdout.buffer), (err_r, sys.stderr.buffer))]
        for t in self.readers:
            t.start()

    def _forward(self, fd, out):
        with open(fd, 'rb') as f:
            for line in f:
                if self.relay:
                    # Up as it came, marked with its node if it is not already.
                    if not line.startswith(FROM):
                        line = FROM + b'%d ' % self.nodes[0] + line
                    write_line(out, line)
                    continue
                task, line = self._split_label(line)
                origin = None
                if line.startswith(FROM):
                    head, _, line = line[len(FROM):].partition(b' ')
                    origin = int(head) if head.isdigit() else None
                if task is None and line.rstrip() == SRUN_NO_CPU_BIND:
                    continue                # --cpu-bind=none where binding is off anyway
                if line.startswith(node_mod.MARK.encode()):
                    self._control(line, task)
                    continue
                if self.label:
                    line = f'[{self._source(task, origin)}] '.encode() + line
                write_line(out, line)

    def _split_label(self, line):
        """(srun task, line without srun's "<task>: " label), or (None, line)."""
        if self.srun:
            head, sep, rest = line.partition(b': ')
            if sep and head.strip().isdigit():
                return int(head), rest
        return None, line

    def _source(self, task, origin=None):
        """The host a line came from: the node it is marked with, a session's
        own node, or an srun task's node."""
        if origin is not None:
            return self.hosts.get(origin, '?')
        if not self.srun:
            return self.hosts.get(self.nodes[0], '?')
        node = self.tasks.get(task)
        if node is not None:
            return self.hosts.get(node, '?')
        return 'srun' if task is None else f'srun task {task}'

    def _control(self, line, task=None):
        _, word, fields = line.decode().split(' ', 2)
        fields = json.loads(fields)
        with self.cond:
            if word == 'READY':
                self.ready[fields['node']] = fields
                if task is not None:
                    self.tasks[task] = fields['node']
            elif word == 'PEERED':
                self.peered.add(fields['node'])
            elif word == 'ENDED':           # a relay's session ended: its subtree is gone
                for i in fields['nodes']:
                    self.ended.setdefault(i, f"its launch session (from node {fields['relay']}) "
                                             f"ended (status {fields['status']})")
            self.cond.notify_all()

    def send(self, obj):
        """Send a JSON line (configuration) to the session's nodes."""
        self._write((json.dumps(obj) + '\n').encode())

    def signal(self, signum):
        """Have the session's nodes send signum to their processes."""
        if self.exited is None:
            self._write(f'signal {int(signum)}\n'.encode())

    def _write(self, data):
        if self.stdin is None:
            return
        try:
            os.write(self.stdin, data)      # one write: no partial lines
        except OSError:
            pass

    def poll(self):
        if self.exited is None:
            try:
                self.exited = _core.call(_core.gocore().ProcWait, self.handle, 0)
            except TimeoutError:
                pass
        return self.exited

    def stop(self):
        self._write(b'stop\n')
        fd, self.stdin = self.stdin, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def finish(self, timeout):
        deadline = time.monotonic() + timeout
        gc = _core.gocore()
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.poll() is None and self.srun:
            # srun passes SIGTERM on to the nodes (which end cleanly), then ends
            _core.call(gc.ProcSignal, self.handle, 15)
            deadline = time.monotonic() + 5
            while self.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        if self.poll() is None:
            _core.call(gc.ProcSignal, self.handle, 9)
            _core.call(gc.ProcWait, self.handle, 5_000_000_000)
        for t in self.readers:
            t.join(2)
        _core.call(gc.ProcRelease, self.handle)


class Cluster:
    """The nodes of a run: started, connected, watched, ended."""

    def __init__(self, hosts, launch=None, slurm=False, label=False, port=0, fanout=DEFAULT_FANOUT):
        self.hosts = hosts
        self.fanout = fanout
        self.label = label
        self.port = port
        self.sessions = []
        self.launch = launch
        self.slurm = slurm

    def start(self):
        gc = _core.gocore()
        n = len(self.hosts)
        run = _runtime.runid()
        ids = json.loads(_core.call(gc.RunIdentities, run, n))
        head_ip = self._head_ip()
        env0 = [f'{_runtime.ENV_RUN}={run}', f'{_runtime.ENV_NODE}=0']
        addr0 = json.loads(_core.call(gc.AgentStart, json.dumps(ids[0]), f'{head_ip}:{self.port}',
                                      json.dumps(env0)))
        byindex = dict(enumerate(self.hosts))
        base = {'run': run, 'head': head_ip}
        if self.slurm:
            # One step, one task on each other node of the allocation. Slurm numbers the
            # tasks in its own node order (not --nodelist's), so a node finds its index
            # by its Slurm node name (SLURMD_NODENAME) in `slurm_nodes`; stdin is
            # broadcast to every task, so the first line carries every identity. The step
            # gets all the job's CPUs on its nodes (srun's default without --exact);
            # --cpu-bind=none keeps a task plugin from binding a node to one CPU.
            others = self.hosts[1:]
            argv = ['srun', f'--nodes={len(others)}', f'--ntasks={len(others)}',
                    '--ntasks-per-node=1', f'--nodelist={",".join(others)}', '--input=all',
                    '--kill-on-bad-exit=0', '--cpu-bind=none', '--job-name=dragon_mp-nodes',
                    '--label', 'sh', '-c', node_command('slurm')]
            s = Session(argv, list(range(1, n)), byindex, self.label, srun=True)
            s.send({**base, 'identities': {str(i): ids[i] for i in range(1, n)},
                    'slurm_nodes': {h: i for i, h in enumerate(self.hosts) if i}})
            self.sessions.append(s)
        else:
            launch = {'template': shlex.split(self.launch or os.environ.get('DRAGON_MP_LAUNCH')
                                              or DEFAULT_SSH),
                      'fanout': self.fanout}
            self.sessions += start_subtree(launch, run, base, {str(i): ids[i] for i in range(n)},
                                           {str(i): h for i, h in byindex.items()},
                                           list(range(1, n)), 0, label=self.label)
        ready = self._wait_all('ready', n - 1)
        peers = {str(i): f['addr'] for i, f in ready.items()}
        peers['0'] = addr0
        cpus = [self._own_cpus()] + [ready[i]['cpus'] for i in range(1, n)]
        env = {_runtime.ENV_NODES: ','.join(self.hosts),
               _runtime.ENV_NCPUS: ','.join(map(str, cpus)),
               'DRAGON_MP_PEERS': json.dumps(peers)}     # where the agents listen (diagnostics)
        _core.call(gc.AgentSetPeers, json.dumps(peers))
        for s in self.sessions:
            s.send({'peers': peers, 'env': env})
        self._wait_all('peered', n - 1)
        os.environ.update(env)
        return env

    def _own_cpus(self):
        """Node 0's CPUs: its affinity, in a Slurm run at most what the allocation has
        on this host (the launcher itself runs outside any step): none when the
        launcher's host is not in the allocation (a login node), so that
        cpu_count() is the allocation's and placement leaves this host out."""
        cpus = len(os.sched_getaffinity(0))
        if self.slurm and _allocation:
            cpus = min(cpus, slurm_cpus(_allocation).get(self.hosts[0], 0))
        return cpus

    def _head_ip(self):
        if len(self.hosts) < 2:
            return '127.0.0.1'
        try:
            return node_mod.local_ip(socket.gethostbyname(self.hosts[1]))
        except OSError as e:
            raise SystemExit(f'dragon: cannot reach host {self.hosts[1]!r}: {e}') from None

    def _wait_all(self, what, count):
        deadline = time.monotonic() + BRINGUP_TIMEOUT
        merged = {}
        while True:
            merged = {}
            for s in self.sessions:
                with s.cond:
                    if what == 'ready':
                        merged.update(s.ready)
                    else:
                        merged.update({n: True for n in s.peered})
            if len(merged) >= count:
                return merged
            for s in self.sessions:
                if s.poll() is not None:
                    missing = [self.hosts[i] for i in s.nodes if i not in merged]
                    command = 'srun' if s.srun else 'launch command'
                    raise SystemExit(f'dragon: could not start the run on {", ".join(missing)} '
                                     f'({command} exited with status {s.exited})')
                with s.cond:
                    ended = {i: why for i, why in s.ended.items() if i not in merged}
                if ended:
                    raise SystemExit(f'dragon: could not start the run on '
                                     f'{", ".join(self.hosts[i] for i in sorted(ended))} '
                                     f'({next(iter(ended.values()))})')
            if time.monotonic() > deadline:
                missing = [h for i, h in enumerate(self.hosts) if i and i not in merged]
                raise SystemExit(f'dragon: nodes not {what} after {BRINGUP_TIMEOUT:.0f} s: '
                                 f'{", ".join(missing)}')
            with self.sessions[0].cond:
                self.sessions[0].cond.wait(0.1)

    def lost(self):
        """{node: reason} for nodes lost so far (agent or session gone)."""
        lost = {int(k): v for k, v in json.loads(_core.call(_core.gocore().AgentLost)).items()}
        for s in self.sessions:
            if s.poll() is not None:
                for i in s.nodes:
                    lost.setdefault(i, f'its launch session ended (status {s.exited})')
            with s.cond:
                for i, why in s.ended.items():
                    lost.setdefault(i, why)
        return lost

    def signal(self, signum):
        """Send signum to every process of the run on the other nodes."""
        for s in self.sessions:
            s.signal(signum)

    def stop(self):
        """End every node's part: close the sessions' stdin (each node then ends
        its processes and removes its memory) and wait for them, all at once. A
        lost node's session is not waited for: nothing it runs can answer, and
        its ssh (or srun) would only notice after its own timeouts."""
        lost = set(self.lost())
        for s in self.sessions:
            s.stop()
        waiters = [threading.Thread(target=s.finish, args=(0 if set(s.nodes) <= lost else 15,),
                                    daemon=True) for s in self.sessions]
        for t in waiters:
            t.start()
        for t in waiters:
            t.join()
        _core.call(_core.gocore().AgentStop)

"""Real separate hosts on one machine, for multi-node tests.

    from cluster import NetnsCluster, SlurmCluster

    with NetnsCluster(3) as c:              # namespaces n0..n2 on a private /24 behind a bridge
        c.run(1, ['ping', '-c1', c.ips[2]])
        c.cut(2); ...; c.heal(2)            # node 2 off the network (both directions) and back
        c.start_sshd()                      # `ssh -F c.ssh_config n1 cmd` works from the root namespace
        with SlurmCluster(c, nodes=2) as s: # munged + slurmctld + one slurmd per node
            subprocess.run(['salloc', '-N2', 'srun', '-N2', 'hostname'], env=s.env)

Every node is a network namespace `<uid>-n<i>` (veth `eth0` inside, its peer on the bridge
`<uid>br`), and every process started in it also gets its own UTS namespace whose hostname is the
node's name ("n0", ...), plus an /etc/hosts (via /etc/netns/<ns>/) that maps all node names, so
`hostname`, `socket.gethostname()` and lookups of node names work inside nodes. The root namespace
reaches the nodes through the bridge address (.1).

Requirements: root, `ip` (iproute2), `unshare` (util-linux); sshd (openssh-server) for
start_sshd(); slurm-wlm + munge for SlurmCluster. The pytest fixtures at the bottom skip when those
are missing -- or fail when the CI environment variable is set, as CI must install them.

Nothing is left behind by close() (also run on exceptions; the fixtures always close): the
namespaces' processes are killed, namespaces, veths, bridge, /etc/netns entries and temp dirs are
removed. Each cluster records what it made in /run/dragon_mp-cluster/<uid>.json; a later cluster
cleans up after clusters whose owner process died (cleanup_stale()).
"""

import contextlib
import fcntl
import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

STATE_DIR = '/run/dragon_mp-cluster'
NETNS_ETC = '/etc/netns'
SUBNET_BASE = '10.251.0.0'   # clusters get 10.251.X.0/24, X unique among live clusters / used addrs
DEFAULT_PREFIX = 'dmc'
SSHD = '/usr/sbin/sshd'


# --- small helpers ----------------------------------------------------------------------------

def _sh(argv, check=True, timeout=30, **kw):
    kw.setdefault('capture_output', True)
    kw.setdefault('text', True)
    r = subprocess.run(argv, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f'{argv!r} failed ({r.returncode}): {r.stderr.strip()}')
    return r


def _proc_start(pid):
    """Start time of pid (clock ticks since boot), or None if it does not exist."""
    try:
        with open(f'/proc/{pid}/stat', 'rb') as f:
            return int(f.read().rsplit(b')', 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid, start):
    s = _proc_start(pid)
    return s is not None and (start is None or s == start)


def _wait_until(pred, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def wait_pids_gone(pids, timeout=5.0):
    """True once none of pids is a live (non-zombie) process."""
    def live(pid):
        try:
            with open(f'/proc/{pid}/stat', 'rb') as f:
                return f.read().rsplit(b')', 1)[1].split()[0] != b'Z'
        except OSError:
            return False
    return _wait_until(lambda: not any(live(p) for p in pids), timeout)


def _tcp_open(ip, port, timeout=0.2):
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def _free_port(ip):
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def _netns_list():
    r = _sh(['ip', 'netns', 'list'], check=False)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def _netns_pids(ns):
    r = _sh(['ip', 'netns', 'pids', ns], check=False)
    return [int(p) for p in r.stdout.split() if p.isdigit()]


def _link_exists(name):
    return os.path.exists(f'/sys/class/net/{name}')


def _kill_netns_processes(ns, timeout=3.0):
    """SIGTERM, then SIGKILL, every process whose network namespace is ns."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _netns_pids(ns)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if _wait_until(lambda: not _netns_pids(ns), timeout if sig == signal.SIGTERM else 5.0):
            return


def _kill_pid(pid, start, timeout=3.0):
    if not _alive(pid, start):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if _wait_until(lambda: not _alive(pid, start), timeout):
            return


def _comm_ppid(pid):
    try:
        with open(f'/proc/{pid}/stat', 'rb') as f:
            head, rest = f.read().rsplit(b')', 1)
        return head.split(b'(', 1)[1].decode(errors='replace'), int(rest.split()[1])
    except (OSError, IndexError, ValueError):
        return None, None


def _kill_slurm_processes(ns, timeout=3.0):
    """Kill slurmd/slurmstepd processes in ns and everything below them."""
    def targets():
        pids = _netns_pids(ns)
        info = {p: _comm_ppid(p) for p in pids}
        chosen = {p for p, (comm, _) in info.items() if comm in ('slurmd', 'slurmstepd')}
        grew = True
        while grew:
            more = {p for p, (_, pp) in info.items() if pp in chosen} - chosen
            chosen |= more
            grew = bool(more)
        return chosen
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in targets():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if _wait_until(lambda: not targets(), timeout):
            return


def _destroy(state):
    """Remove everything a cluster's state record lists. Idempotent; used by close() and stale cleanup."""
    for pid, start in state.get('pids', []):
        _kill_pid(pid, start)
    existing = set(_netns_list())
    for ns in state.get('namespaces', []):
        if ns in existing:
            _kill_netns_processes(ns)
            _sh(['ip', 'netns', 'delete', ns], check=False)
    for link in state.get('links', []) + [state.get('bridge')]:
        if link and _link_exists(link):
            _sh(['ip', 'link', 'delete', link], check=False)
    for d in state.get('dirs', []):
        shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def _locked():
    os.makedirs(STATE_DIR, exist_ok=True)
    with open(os.path.join(STATE_DIR, '.lock'), 'w') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _state_files():
    try:
        names = os.listdir(STATE_DIR)
    except FileNotFoundError:
        return []
    return [os.path.join(STATE_DIR, n) for n in names if n.endswith('.json')]


def _read_state(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def cleanup_stale():
    """Remove clusters whose owning process is gone (e.g. a killed test run). Returns their uids."""
    removed = []
    with _locked():
        for path in _state_files():
            st = _read_state(path)
            if st is None or _alive(st.get('owner'), st.get('owner_start')):
                continue
            _destroy(st)
            os.unlink(path)
            removed.append(st.get('uid'))
    return removed


# --- requirements (skip, or fail under CI) ---------------------------------------------------

def _missing(what):
    msg = f'cluster tests need {what}'
    if os.environ.get('CI'):
        pytest.fail(msg + ' (CI is set: .ci/run must install it)', pytrace=False)
    pytest.skip(msg)


def require_netns():
    """Skip unless we can build network namespaces (root and `ip`)."""
    if os.geteuid() != 0:
        pytest.skip('cluster tests need root (network namespaces)')
    for tool in ('ip', 'unshare', 'hostname'):
        if not shutil.which(tool):
            pytest.skip(f'cluster tests need `{tool}` (iproute2 / util-linux / hostname)')


def require_sshd():
    require_netns()
    for tool in (SSHD, 'ssh', 'ssh-keygen'):
        if not shutil.which(tool):
            _missing(f'{tool} (openssh-server, openssh-client)')


def require_slurm():
    require_netns()
    for tool in ('slurmctld', 'slurmd', 'srun', 'salloc', 'sinfo', 'munged'):
        if not shutil.which(tool, path=os.environ.get('PATH', '') + ':/usr/sbin:/sbin'):
            _missing(f'{tool} (slurm-wlm: slurmctld slurmd slurm-client; munge)')


# --- the cluster ------------------------------------------------------------------------------

class NetnsCluster:
    """n hosts n0..n{n-1}: network namespaces on one bridge. A context manager; close() undoes all.

    Attributes: uid, hosts, ips, namespaces, bridge, bridge_ip, subnet, tmpdir, ssh_config (after
    start_sshd()).
    """

    def __init__(self, n, prefix=None):
        if not 1 <= n <= 250:
            raise ValueError('n must be in 1..250')
        prefix = DEFAULT_PREFIX if prefix is None else prefix
        if not prefix.isalnum() or len(prefix) > 6:
            raise ValueError('prefix: at most 6 letters/digits (interface names are short)')
        cleanup_stale()
        self.n = n
        self.hosts = [f'n{i}' for i in range(n)]
        self.ssh_config = None
        self._procs = []          # Popen objects we must reap
        self._closed = False
        self._sshd_started = False
        with _locked():
            taken_uids = {os.path.basename(p)[:-5] for p in _state_files()}
            while True:
                self.uid = f'{prefix}{random.randrange(16 ** 4):04x}'
                if self.uid not in taken_uids and not _link_exists(self.uid + 'br'):
                    break
            self.subnet = self._pick_subnet()
            net = ipaddress.ip_network(self.subnet)
            self.bridge_ip = str(net[1])
            self.ips = [str(net[i + 2]) for i in range(n)]
            self.namespaces = [f'{self.uid}-n{i}' for i in range(n)]
            self.bridge = f'{self.uid}br'
            self._veths = [f'{self.uid}h{i}' for i in range(n)]
            self.tmpdir = tempfile.mkdtemp(prefix=f'{self.uid}-')
            os.chmod(self.tmpdir, 0o755)   # munged wants o+x on every directory above its socket
            self._state = {
                'uid': self.uid, 'owner': os.getpid(), 'owner_start': _proc_start(os.getpid()),
                'subnet': self.subnet, 'namespaces': self.namespaces, 'bridge': self.bridge,
                'links': list(self._veths), 'pids': [],
                'dirs': [self.tmpdir] + [os.path.join(NETNS_ETC, ns) for ns in self.namespaces],
            }
            self._save_state()
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    # state record (for close() after a crash of the owner) --------------------------------

    @property
    def _state_path(self):
        return os.path.join(STATE_DIR, self.uid + '.json')

    def _save_state(self):
        tmp = self._state_path + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(self._state, f)
        os.replace(tmp, self._state_path)

    def _record_pid(self, pid):
        """A root-namespace process (daemon) that close() must kill, also after our own death."""
        self._state['pids'].append([pid, _proc_start(pid)])
        self._save_state()

    def _pick_subnet(self):
        used = set()
        r = _sh(['ip', '-4', '-o', 'addr', 'show'], check=False)
        for tok in r.stdout.split():
            if '/' in tok:
                with contextlib.suppress(ValueError):
                    used.add(ipaddress.ip_interface(tok).ip.packed[:3])
        for path in _state_files():
            st = _read_state(path)
            if st and st.get('subnet'):
                used.add(ipaddress.ip_network(st['subnet']).network_address.packed[:3])
        base = ipaddress.ip_address(SUBNET_BASE).packed
        free = [x for x in range(1, 255) if base[:2] + bytes([x]) not in used]
        if not free:
            raise RuntimeError('no free /24 in 10.251.0.0/16')
        x = random.choice(free)
        return f'{base[0]}.{base[1]}.{x}.0/24'

    # building ----------------------------------------------------------------------------

    def _build(self):
        ip = lambda *a: _sh(['ip', *a])
        ip('link', 'add', self.bridge, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0')
        ip('addr', 'add', f'{self.bridge_ip}/24', 'dev', self.bridge)
        ip('link', 'set', self.bridge, 'up')
        hosts = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback',
                 f'{self.bridge_ip}\t{self.uid}-gw']
        hosts += [f'{addr}\t{h}' for addr, h in zip(self.ips, self.hosts)]
        for i, ns in enumerate(self.namespaces):
            veth, peer = self._veths[i], f'{self.uid}p{i}'
            ip('netns', 'add', ns)
            ip('link', 'add', veth, 'type', 'veth', 'peer', 'name', peer)
            ip('link', 'set', peer, 'netns', ns)
            ip('link', 'set', veth, 'master', self.bridge)
            ip('link', 'set', veth, 'up')
            nsip = lambda *a: _sh(['ip', '-n', ns, *a])
            nsip('link', 'set', peer, 'name', 'eth0')
            nsip('addr', 'add', f'{self.ips[i]}/24', 'dev', 'eth0')
            nsip('link', 'set', 'lo', 'up')
            nsip('link', 'set', 'eth0', 'up')
            nsip('route', 'add', 'default', 'via', self.bridge_ip)
            etc = os.path.join(NETNS_ETC, ns)
            os.makedirs(etc, exist_ok=True)
            with open(os.path.join(etc, 'hosts'), 'w') as f:
                f.write('\n'.join(hosts) + '\n')
            with open(os.path.join(etc, 'hostname'), 'w') as f:
                f.write(self.hosts[i] + '\n')

    # running things in nodes -------------------------------------------------------------

    def _index(self, i):
        if isinstance(i, str):
            return self.hosts.index(i)
        return i

    def argv(self, i, argv, uts=True, sysfs=True):
        """The argv that runs `argv` inside node i: its network namespace, /etc/netns/<ns>/* bound
        over /etc, and (uts) a UTS namespace whose hostname is the node's name.

        sysfs=True uses `ip netns exec`, which also remounts /sys for the namespace (so
        /sys/class/net is the node's) -- and thereby hides the cgroup mounts under /sys/fs/cgroup.
        sysfs=False enters the namespace with nsenter and keeps /sys (slurmd needs its cgroups)."""
        i = self._index(i)
        ns = self.namespaces[i]
        if sysfs:
            cmd = ['ip', 'netns', 'exec', ns]
            if uts:
                cmd += ['unshare', '--uts', '--', 'sh', '-c', 'hostname "$0" && exec "$@"',
                        self.hosts[i]]
            return cmd + list(argv)
        script = (f'for f in {NETNS_ETC}/{ns}/*; do mount --bind "$f" "/etc/${{f##*/}}" || exit 1; done'
                  + (' && hostname "$0"' if uts else '') + ' && exec "$@"')
        return (['nsenter', f'--net=/run/netns/{ns}', '--', 'unshare', '--mount',
                 '--propagation', 'slave'] + (['--uts'] if uts else [])
                + ['--', 'sh', '-c', script, self.hosts[i]] + list(argv))

    def popen(self, i, argv, uts=True, sysfs=True, **kw):
        """subprocess.Popen inside node i; close() kills and reaps it if still running."""
        p = subprocess.Popen(self.argv(i, argv, uts, sysfs), **kw)
        self._procs.append(p)
        return p

    def run(self, i, argv, uts=True, sysfs=True, timeout=60, **kw):
        """subprocess.run inside node i (capture_output/text default to True)."""
        kw.setdefault('capture_output', True)
        kw.setdefault('text', True)
        return subprocess.run(self.argv(i, argv, uts, sysfs), timeout=timeout, **kw)

    # network faults ----------------------------------------------------------------------

    def cut(self, i):
        """Node i off the network: its bridge port goes down, so its eth0 loses carrier and every
        packet to or from it is dropped (the root namespace cannot reach it either)."""
        _sh(['ip', 'link', 'set', self._veths[self._index(i)], 'down'])

    def heal(self, i):
        i = self._index(i)
        _sh(['ip', 'link', 'set', self._veths[i], 'up'])
        # carrier comes back asynchronously: wait for the node's side to see it
        _wait_until(lambda: 'LOWER_UP' in _sh(['ip', '-n', self.namespaces[i], '-o', 'link', 'show',
                                                'eth0']).stdout, 5.0)
        # forget neighbours that failed to resolve while cut, so traffic resumes at once
        for ns in self.namespaces:
            _sh(['ip', '-n', ns, 'neigh', 'flush', 'dev', 'eth0'], check=False)
        _sh(['ip', 'neigh', 'flush', 'dev', self.bridge], check=False)

    # ssh ---------------------------------------------------------------------------------

    def start_sshd(self, timeout=15):
        """An OpenSSH server in every node (root login by a generated key, on <ip>:22).

        Returns (and sets) self.ssh_config: `ssh -F <ssh_config> n1 cmd`. Sessions get this
        process's PATH (so sys.executable's directory is on it) and accept any SendEnv'd variable;
        the filesystem is shared, so sys.executable runs there by absolute path."""
        if self._sshd_started:
            return self.ssh_config
        d = os.path.join(self.tmpdir, 'ssh')
        os.makedirs(d, mode=0o700)
        os.makedirs('/run/sshd', mode=0o755, exist_ok=True)   # sshd's privilege-separation dir
        key = os.path.join(d, 'id_ed25519')
        _sh(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', f'{self.uid}-client', '-f', key])
        auth = os.path.join(d, 'authorized_keys')
        shutil.copy(key + '.pub', auth)
        os.chmod(auth, 0o600)
        path_env = os.pathsep.join(dict.fromkeys(
            [os.path.dirname(sys.executable)] + os.environ.get('PATH', '/usr/bin:/bin').split(os.pathsep)))
        client = []
        for i, (host, addr) in enumerate(zip(self.hosts, self.ips)):
            hk = os.path.join(d, f'host_{host}')
            _sh(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', host, '-f', hk])
            conf = os.path.join(d, f'sshd_{host}.conf')
            with open(conf, 'w') as f:
                f.write('\n'.join([
                    f'ListenAddress {addr}:22', f'HostKey {hk}', f'PidFile {d}/sshd_{host}.pid',
                    f'AuthorizedKeysFile {auth}', 'AuthorizedKeysCommand none',
                    'PermitRootLogin prohibit-password', 'PubkeyAuthentication yes',
                    'PasswordAuthentication no', 'KbdInteractiveAuthentication no',
                    'UsePAM no', 'StrictModes no', 'UseDNS no', 'PrintMotd no', 'PrintLastLog no',
                    'PermitUserEnvironment yes', 'AcceptEnv *', f'SetEnv PATH={path_env}',
                    'MaxStartups 200', 'MaxSessions 200', 'LogLevel ERROR',
                    'Subsystem sftp internal-sftp', '']))
            log = open(os.path.join(d, f'sshd_{host}.log'), 'wb')
            with log:
                self.popen(i, [SSHD, '-D', '-e', '-f', conf], stdin=subprocess.DEVNULL,
                           stdout=log, stderr=subprocess.STDOUT)
            client += [f'Host {host}', f'  HostName {addr}', '  User root', f'  IdentityFile {key}',
                       '  IdentitiesOnly yes', '  StrictHostKeyChecking no',
                       '  UserKnownHostsFile /dev/null', '  GlobalKnownHostsFile /dev/null',
                       '  LogLevel ERROR', '  BatchMode yes', '  ConnectTimeout 5', '']
        cfg = os.path.join(d, 'ssh_config')
        with open(cfg, 'w') as f:
            f.write('\n'.join(client))
        self._sshd_started = True
        self.ssh_config = cfg
        for i, addr in enumerate(self.ips):
            if not _wait_until(lambda: _tcp_open(addr, 22), timeout):
                with open(os.path.join(d, f'sshd_{self.hosts[i]}.log'), errors='replace') as f:
                    raise RuntimeError(f'sshd on {self.hosts[i]} did not start: {f.read()}')
        return cfg

    def ssh_argv(self, i, *command):
        """['ssh', '-F', cfg, host, *command] -- run from the root namespace (or from any node)."""
        if not self.ssh_config:
            raise RuntimeError('start_sshd() first')
        host = self.hosts[self._index(i)]
        return ['ssh', '-F', self.ssh_config, host, *command]

    def ssh(self, i, *command, timeout=60, **kw):
        kw.setdefault('capture_output', True)
        kw.setdefault('text', True)
        kw.setdefault('stdin', subprocess.DEVNULL)
        return subprocess.run(self.ssh_argv(i, *command), timeout=timeout, **kw)

    # teardown ----------------------------------------------------------------------------

    def close(self):
        if self._closed:
            return
        self._closed = True
        try:
            _destroy(self._state)
        finally:
            for p in self._procs:
                if p.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=5)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._state_path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        with contextlib.suppress(Exception):
            if not self._closed and self._state.get('owner') == os.getpid():
                self.close()


# --- Slurm ------------------------------------------------------------------------------------

class SlurmCluster:
    """munged + slurmctld (root namespace, on the bridge address) + one slurmd per node.

    nodes: how many of the cluster's nodes (n0..n{k-1}) run a slurmd (default: all).
    Attributes: net, nodes (names), conf (slurm.conf path), env (os.environ with SLURM_CONF and no
    stray SLURM_* job variables: pass it to salloc/srun/sinfo), partition, dir, munge_socket.
    """

    def __init__(self, net, nodes=None, timeout=30):
        self.net = net
        k = net.n if nodes is None else nodes
        if not 1 <= k <= net.n:
            raise ValueError(f'nodes must be in 1..{net.n}')
        self.nodes = net.hosts[:k]
        self.partition = 'debug'
        self.dir = os.path.join(net.tmpdir, 'slurm')
        self._procs = []
        self._closed = False
        try:
            self._start(timeout)
        except BaseException:
            self.close()
            raise

    def _daemon(self, argv, log):
        with open(log, 'ab') as f:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        self._procs.append(p)
        self.net._record_pid(p.pid)
        return p

    def _log(self, name):
        with contextlib.suppress(OSError), open(os.path.join(self.dir, 'log', name),
                                                errors='replace') as f:
            return f.read()[-3000:]
        return ''

    def _start(self, timeout):
        d = self.dir
        for sub in ('', 'log', 'state', 'spool', 'munge'):
            os.makedirs(os.path.join(d, sub), mode=0o755, exist_ok=True)
        # munge: own key, socket and state, so a system munged (if any) does not matter
        m = os.path.join(d, 'munge')
        key = os.path.join(m, 'munge.key')
        with open(key, 'wb') as f:
            f.write(os.urandom(1024))
        os.chmod(key, 0o400)
        self.munge_socket = os.path.join(m, 'munge.socket')
        self._munged = self._daemon(
            ['munged', '-F', f'--socket={self.munge_socket}', f'--key-file={key}',
             f'--log-file={m}/munged.log', f'--pid-file={m}/munged.pid',
             f'--seed-file={m}/munged.seed', '--num-threads=2'], os.path.join(d, 'log', 'munged.out'))
        if not _wait_until(lambda: os.path.exists(self.munge_socket) or self._munged.poll() is not None,
                           timeout):
            pass
        if not os.path.exists(self.munge_socket):
            raise RuntimeError('munged did not start: ' + self._log('munged.out')
                               + open(f'{m}/munged.log', errors='replace').read()[-2000:])

        net = self.net
        self.ctld_port = _free_port(net.bridge_ip)
        ctl_host = socket.gethostname().split('.')[0]
        ncpu = os.cpu_count() or 1
        lines = [
            f'ClusterName={net.uid}',
            f'SlurmctldHost={ctl_host}({net.bridge_ip})',
            f'SlurmctldPort={self.ctld_port}', 'SlurmdPort=6818',
            'SlurmUser=root', 'SlurmdUser=root',
            'AuthType=auth/munge', 'CredType=cred/munge', f'AuthInfo=socket={self.munge_socket}',
            f'StateSaveLocation={d}/state', f'SlurmdSpoolDir={d}/spool/%n',
            f'SlurmctldPidFile={d}/slurmctld.pid', f'SlurmdPidFile={d}/slurmd-%n.pid',
            f'SlurmctldLogFile={d}/log/slurmctld.log', f'SlurmdLogFile={d}/log/slurmd-%n.log',
            'SlurmctldDebug=info', 'SlurmdDebug=info',
            'ProctrackType=proctrack/linuxproc', 'TaskPlugin=task/none',
            'SelectType=select/cons_tres', 'SelectTypeParameters=CR_CPU',
            'SchedulerType=sched/builtin', 'MpiDefault=none',
            'JobAcctGatherType=jobacct_gather/none', 'AccountingStorageType=accounting_storage/none',
            'JobCompType=jobcomp/none', 'ReturnToService=2', 'SlurmdParameters=config_overrides',
            'SlurmctldTimeout=30', 'SlurmdTimeout=30', 'InactiveLimit=0', 'MinJobAge=2',
            'KillWait=2', 'MessageTimeout=10', 'TCPTimeout=5', 'HealthCheckInterval=0',
        ]
        lines += [f'NodeName={h} NodeAddr={a} NodeHostname={h} CPUs={ncpu} State=UNKNOWN'
                  for h, a in zip(self.nodes, net.ips)]
        lines.append(f'PartitionName={self.partition} Nodes={",".join(self.nodes)} Default=YES '
                     'MaxTime=INFINITE State=UP')
        self.conf = os.path.join(d, 'slurm.conf')
        with open(self.conf, 'w') as f:
            f.write('\n'.join(lines) + '\n')
        self.env = {k: v for k, v in os.environ.items() if not k.startswith('SLURM_')}
        self.env['SLURM_CONF'] = self.conf

        self._ctld = self._daemon(['slurmctld', '-D', '-i', '-f', self.conf],
                                  os.path.join(d, 'log', 'slurmctld.out'))
        if not _wait_until(lambda: _tcp_open(net.bridge_ip, self.ctld_port)
                           or self._ctld.poll() is not None, timeout):
            pass
        if self._ctld.poll() is not None or not _tcp_open(net.bridge_ip, self.ctld_port):
            raise RuntimeError('slurmctld did not start:\n' + self._log('slurmctld.out')
                               + self._log('slurmctld.log'))
        for i, h in enumerate(self.nodes):
            os.makedirs(os.path.join(d, 'spool', h), mode=0o755, exist_ok=True)
            with open(os.path.join(d, 'log', f'slurmd-{h}.out'), 'ab') as f:
                p = net.popen(i, ['slurmd', '-D', '-N', h, '-f', self.conf], sysfs=False,
                              stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                              env=self.env)
            self._procs.append(p)
        if not _wait_until(self._all_idle, timeout, interval=0.2):
            logs = ''.join(f'--- {n}\n{self._log(n)}\n' for n in
                           ['slurmctld.log'] + [f'slurmd-{h}.out' for h in self.nodes]
                           + [f'slurmd-{h}.log' for h in self.nodes])
            raise RuntimeError(f'slurm nodes not idle: {self.node_states()}\n{logs}')

    def node_states(self):
        r = subprocess.run(['sinfo', '-h', '-N', '-o', '%N %T'], env=self.env, capture_output=True,
                           text=True, timeout=15)
        return dict(line.split(None, 1) for line in r.stdout.splitlines() if line.strip())

    def _all_idle(self):
        st = self.node_states()
        return all(st.get(h) == 'idle' for h in self.nodes)

    def run(self, argv, timeout=60, **kw):
        """subprocess.run of a Slurm client command (salloc, srun, sinfo, ...) against this cluster."""
        kw.setdefault('capture_output', True)
        kw.setdefault('text', True)
        kw.setdefault('stdin', subprocess.DEVNULL)
        return subprocess.run(argv, env=kw.pop('env', self.env), timeout=timeout, **kw)

    def close(self):
        if self._closed:
            return
        self._closed = True
        # slurmds, their slurmstepds (daemonized: not our children) and the jobs' tasks; other
        # processes in the nodes (sshd, ...) are the NetnsCluster's business
        for ns in self.net.namespaces[:len(self.nodes)]:
            if ns in _netns_list():
                _kill_slurm_processes(ns)
        for p in reversed(self._procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- pytest fixtures: import them into a test module (`from cluster import ssh_cluster`) ---------

@pytest.fixture
def cluster_factory():
    """make(n=2, ssh=False, slurm_nodes=0) -> NetnsCluster (with .slurm if slurm_nodes); all closed
    at the end of the test. Skips (or fails under CI) when requirements are missing."""
    made = []

    def make(n=2, ssh=False, slurm_nodes=0, prefix=None):
        require_netns()
        if ssh:
            require_sshd()
        if slurm_nodes:
            require_slurm()
        c = NetnsCluster(n, prefix=prefix)
        made.append(c)
        c.slurm = None
        if ssh:
            c.start_sshd()
        if slurm_nodes:
            c.slurm = SlurmCluster(c, nodes=slurm_nodes)
        return c

    try:
        yield make
    finally:
        for c in reversed(made):
            if c.slurm is not None:
                c.slurm.close()
            c.close()


@pytest.fixture
def netns_cluster(cluster_factory):
    """Two nodes, n0 and n1."""
    return cluster_factory(2)


@pytest.fixture
def ssh_cluster(cluster_factory):
    """Two nodes with sshd: ssh_cluster.ssh(1, 'hostname'), or ssh -F ssh_cluster.ssh_config n1."""
    return cluster_factory(2, ssh=True)


@pytest.fixture
def slurm_cluster(cluster_factory):
    """Two nodes, both slurmd: slurm_cluster.slurm.run(['salloc', '-N2', 'srun', 'hostname'])."""
    return cluster_factory(2, slurm_nodes=2)

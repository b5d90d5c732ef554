"""The multi-node test infrastructure itself (tests/cluster.py): namespaces, ssh, Slurm, cleanup.

Needs root; skips otherwise. Missing sshd/slurm/ping skip, or fail when CI is set.
"""

import os
import shlex
import shutil
import signal
import subprocess
import sys

import cluster
from cluster import (NetnsCluster, SlurmCluster, cluster_factory, require_netns,  # noqa: F401
                     require_slurm, require_sshd, slurm_cluster, ssh_cluster)

HERE = os.path.dirname(os.path.abspath(__file__))


def require_ping():
    if not shutil.which('ping'):
        cluster._missing('ping (iputils-ping)')


def ping(c, i, target, wait='2'):
    """Node i pings target (an address or a host name) once; True if it answered within `wait` s."""
    return c.run(i, ['ping', '-n', '-c', '1', '-W', wait, target]).returncode == 0


def ping_from_root(addr, wait='2'):
    return subprocess.run(['ping', '-n', '-c', '1', '-W', wait, addr],
                          capture_output=True).returncode == 0


def gone(pid):
    try:
        with open(f'/proc/{pid}/stat', 'rb') as f:
            return f.read().rsplit(b')', 1)[1].split()[0] == b'Z'
    except FileNotFoundError:
        return True


def leftovers(uid):
    """Everything of cluster `uid` still on the machine."""
    out = []
    out += [ns for ns in cluster._netns_list() if ns.startswith(uid)]
    out += [link for link in os.listdir('/sys/class/net') if link.startswith(uid)]
    if os.path.isdir(cluster.NETNS_ETC):
        out += [d for d in os.listdir(cluster.NETNS_ETC) if d.startswith(uid)]
    out += [p for p in os.listdir(cluster.STATE_DIR) if p.startswith(uid)] \
        if os.path.isdir(cluster.STATE_DIR) else []
    out += [d for d in os.listdir('/tmp') if d.startswith(uid + '-')]
    return out


def test_nodes_reach_each_other_and_cut_isolates(cluster_factory):
    require_ping()
    c = cluster_factory(3)
    assert c.hosts == ['n0', 'n1', 'n2']
    assert len(set(c.ips)) == 3 and c.bridge_ip not in c.ips
    for i in range(3):
        assert c.run(i, ['hostname']).stdout.strip() == c.hosts[i]
        out = c.run(i, ['ip', '-4', '-o', 'addr', 'show']).stdout
        assert c.ips[i] + '/24' in out and all(ip not in out for ip in c.ips if ip != c.ips[i])
        assert ping_from_root(c.ips[i])
    assert ping(c, 0, c.ips[1]) and ping(c, 1, 'n2') and ping(c, 2, 'n0')   # names via /etc/hosts

    c.cut(2)
    assert not ping(c, 0, c.ips[2], wait='0.3')
    assert not ping(c, 2, c.ips[1], wait='0.3')
    assert not ping(c, 2, c.bridge_ip, wait='0.3')
    assert not ping_from_root(c.ips[2], wait='0.3')
    assert ping(c, 0, c.ips[1])          # the others still talk

    c.heal(2)
    assert ping(c, 0, 'n2') and ping(c, 2, c.ips[1]) and ping_from_root(c.ips[2])

    # a second cluster coexists: other names, other subnet
    d = cluster_factory(1)
    assert d.uid != c.uid and d.subnet != c.subnet and d.bridge != c.bridge
    assert set(d.namespaces).isdisjoint(c.namespaces)
    assert ping(d, 0, d.bridge_ip) and ping(c, 1, 'n0')


def test_ssh_into_each_node(ssh_cluster):
    c = ssh_cluster
    script = 'import os, socket, sys; print(sys.executable, socket.gethostname(), os.environ.get("DMC_PROBE"))'
    for i, host in enumerate(c.hosts):
        r = c.ssh(i, 'hostname; ip -4 -o addr show eth0')
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0] == host
        assert f'inet {c.ips[i]}/24' in lines[1]
        # the same interpreter by absolute path; an env var sent over (AcceptEnv)
        argv = ['ssh', '-F', c.ssh_config, '-o', 'SendEnv=DMC_PROBE', host,
                shlex.join([sys.executable, '-c', script])]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL, env={**os.environ, 'DMC_PROBE': f'v{i}'})
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == [sys.executable, host, f'v{i}']
    # sys.executable's directory is on the sessions' PATH
    assert c.ssh(1, 'command -v python3').stdout.strip() != ''
    # node to node, with the same client config
    r = c.run(0, ['ssh', '-F', c.ssh_config, 'n1', 'hostname'])
    assert (r.returncode, r.stdout.strip()) == (0, 'n1'), r.stderr
    # a cut node is unreachable by ssh, and back after heal
    c.cut(1)
    r = subprocess.run(['ssh', '-F', c.ssh_config, '-o', 'ConnectTimeout=1', 'n1', 'true'],
                       capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 255
    c.heal(1)
    assert c.ssh(1, 'hostname').stdout.strip() == 'n1'


def test_slurm_srun_on_nodes(slurm_cluster):
    s = slurm_cluster.slurm
    assert s.node_states() == {'n0': 'idle', 'n1': 'idle'}
    r = s.run(['salloc', '-N2', 'srun', '-N2', 'hostname'])
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == ['n0', 'n1']
    script = 'import os, socket; print(socket.gethostname(), os.environ["SLURM_NODEID"])'
    r = s.run(['srun', '-N1', '-w', 'n1', sys.executable, '-c', script])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ['n1', '0']


def test_close_leaves_nothing():
    require_sshd()
    require_slurm()
    c, s = NetnsCluster(2), None
    try:
        uid = c.uid
        c.start_sshd()
        s = SlurmCluster(c, nodes=1)
        tmp = c.tmpdir
        # a daemonized stray inside a node (not our child), and one started over ssh
        stray = int(c.run(1, ['sh', '-c', 'sleep 300 >/dev/null 2>&1 & echo $!']).stdout)
        r = c.ssh(0, 'nohup sleep 301 >/dev/null 2>&1 </dev/null & echo $!')
        assert r.returncode == 0, r.stderr
        root_daemons = [pid for pid, _ in c._state['pids']]   # munged, slurmctld
        node_pids = [p for ns in c.namespaces for p in cluster._netns_pids(ns)]
        assert stray in node_pids and len(node_pids) >= 5      # 2 sshd, slurmd, 2 sleeps
        assert leftovers(uid)
    finally:
        if s is not None:
            s.close()
        c.close()
    assert leftovers(uid) == []
    assert not os.path.exists(tmp)
    assert cluster.wait_pids_gone(root_daemons + node_pids)
    assert not [ns for ns in cluster._netns_list() if ns.startswith(uid)]


def test_stale_cluster_of_killed_run_is_cleaned():
    require_netns()
    code = ('import os, sys; sys.path.insert(0, sys.argv[1]); from cluster import NetnsCluster; '
            'c = NetnsCluster(2); c.popen(1, ["sleep", "300"], stdout=-3, stderr=-3); '
            'print(c.uid, flush=True); os.kill(os.getpid(), 9)')
    r = subprocess.run([sys.executable, '-c', code, HERE], capture_output=True, text=True, timeout=60)
    assert r.returncode == -signal.SIGKILL, r.stderr
    uid = r.stdout.strip()
    assert leftovers(uid)
    pids = [p for ns in cluster._netns_list() if ns.startswith(uid) for p in cluster._netns_pids(ns)]
    assert pids
    assert uid in cluster.cleanup_stale()
    assert leftovers(uid) == []
    assert cluster.wait_pids_gone(pids)

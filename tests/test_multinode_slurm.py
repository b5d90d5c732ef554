"""Multi-node runs inside a real Slurm allocation: network namespaces n0..n2
(tests/cluster.py), munged + slurmctld in the root namespace and a slurmd in
every node, `salloc` run inside node n0, and in it the real launcher with no
--hostfile: it takes the nodes from the allocation and starts them with one
srun (dragon_mp/nodes.py).

Each test checks what the program printed, then that nothing of the run is
left on any node: no process carrying one of the run's ids, no node process or
srun of ours, no shared-memory segment.
"""

import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import cluster as cl
from conftest import our_segments, wait_until
from test_multinode import PRELUDE, run_processes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 3


@pytest.fixture(scope='module')
def net():
    cl.require_slurm()
    c = cl.NetnsCluster(N, prefix='dms')
    try:
        c.slurm = cl.SlurmCluster(c, nodes=N)
        try:
            c.infra_pids = set(_children())
            yield c
        finally:
            c.slurm.close()
    finally:
        c.close()


def _children():
    from conftest import child_pids
    return child_pids()


def slurm_leftovers(net):
    """Our dragon_mp processes and sruns under this cluster's Slurm (not its daemons)."""
    needle = f'SLURM_CONF={net.slurm.conf}'.encode()
    pids = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/cmdline', 'rb') as f:
                cmd = f.read()
            with open(f'/proc/{entry}/environ', 'rb') as f:
                env = f.read()
        except OSError:
            continue
        prog = os.path.basename(cmd.split(b'\0', 1)[0])
        ours = prog == b'srun' or (prog.startswith(b'python') and b'dragon_mp' in cmd)
        if ours and needle in env.split(b'\0'):     # (not the test's salloc and shell)
            pids.append(int(entry))
    return pids


@pytest.fixture(autouse=True)
def no_leaks(net):
    """This module's leak check (the cluster's daemons are pytest's children for the module)."""
    before = our_segments()
    net.runs = []
    yield
    def leftovers():
        segs = sorted(s for s in our_segments() - before if any(r in s for r in net.runs))
        procs = [p for r in net.runs for p in run_processes(r)] + slurm_leftovers(net)
        kids = [p for p in _children() if p not in net.infra_pids]
        return segs, procs, kids
    # (segments of other runs may come and go: other test sessions share /dev/shm)
    assert wait_until(lambda: leftovers() == ([], [], []), 20), f'left behind: {leftovers()}'


def _env(net):
    """The cluster's Slurm client environment (SLURM_CONF), outside any dragon_mp run."""
    env = {k: v for k, v in net.slurm.env.items() if not k.startswith('DRAGON_MP_')}
    env['PYTHONUNBUFFERED'] = '1'
    return env


def write_prog(net, name, source):
    path = os.path.join(net.tmpdir, name)
    with open(path, 'w') as f:
        f.write(textwrap.dedent(source))
    return path


def launcher(prog, label=True):
    return [sys.executable, '-m', 'dragon_mp.launcher'] + (['--label'] if label else []) + [prog]


def salloc(net, alloc, argv, timeout=180, **kw):
    """salloc <alloc> argv, inside node n0 (so node names resolve and n0 is this host)."""
    kw.setdefault('env', _env(net))
    t0 = time.monotonic()
    r = net.run(0, ['salloc', '--quiet', *alloc, *argv], sysfs=False, timeout=timeout, cwd=ROOT,
                **kw)
    r.seconds = time.monotonic() - t0
    net.runs.extend(set(re.findall(r'RUN=(r[0-9a-f-]+)', r.stdout)))
    return r


POOL = PRELUDE + '''
    def where(x):
        time.sleep(0.05)                     # so that every worker gets tasks
        return socket.gethostname(), x * x

    def hello():
        print('hello from', socket.gethostname(), flush=True)
        print('oops on', socket.gethostname(), file=sys.stderr, flush=True)

    if __name__ == '__main__':
        alloc = os.environ['SLURM_JOB_CPUS_PER_NODE']
        print('cpus', mp.cpu_count(), 'nodes', mp.placement.nodes(), 'alloc', alloc, flush=True)
        with mp.Pool(6) as pool:
            out = pool.map(where, range(60), chunksize=1)
        assert [v for _, v in out] == [x * x for x in range(60)]
        print('hosts', sorted({h for h, _ in out}), flush=True)
        for i in range(1, len(mp.placement.nodes())):
            p = mp.Process(target=hello, policy=Policy(node=i))
            p.start(); p.join(60)
        print('main done')
'''


def alloc_cpus(spec):
    """Sum of SLURM_JOB_CPUS_PER_NODE ("2(x2),1")."""
    total = 0
    for part in spec.split(','):
        m = re.fullmatch(r'(\d+)(?:\(x(\d+)\))?', part)
        total += int(m[1]) * int(m[2] or 1)
    return total


def test_pool_over_the_allocation(net):
    prog = write_prog(net, 'pool.py', POOL)
    r = salloc(net, ['-N3'], launcher(prog))
    assert r.returncode == 0, r.stderr
    m = re.search(r"\[n0\] cpus (\d+) nodes (\[.*?\]) alloc (\S+)", r.stdout)
    assert m, r.stdout
    assert m[2] == "['n0', 'n1', 'n2']"
    assert int(m[1]) == alloc_cpus(m[3])             # the allocation's CPUs, not the machine's
    assert "[n0] hosts ['n0', 'n1', 'n2']" in r.stdout
    for h in ('n1', 'n2'):
        assert f'[{h}] hello from {h}' in r.stdout
        assert f'[{h}] oops on {h}' in r.stderr
    assert '[n0] main done' in r.stdout
    assert 'srun' not in r.stderr, r.stderr
    print(f'3-node allocation run: {r.seconds:.1f} s')


def test_two_nodes_unlabelled(net):
    # One other node: srun still labels its lines; without --label none is shown.
    prog = write_prog(net, 'pool2.py', POOL)
    r = salloc(net, ['-N2', '--exclusive'], launcher(prog, label=False))
    assert r.returncode == 0, r.stderr
    cpus = len(os.sched_getaffinity(0))              # --exclusive: every CPU of both nodes
    assert f"cpus {2 * cpus} nodes ['n0', 'n1']" in r.stdout
    assert "hosts ['n0', 'n1']" in r.stdout
    assert '\nhello from n1\n' in '\n' + r.stdout
    assert '\noops on n1\n' in '\n' + r.stderr
    assert not re.search(r'^\d+: ', r.stdout + r.stderr, re.M)


def test_launcher_host_outside_the_allocation(net):
    # salloc on n0 for n1 and n2: the launcher's host is added as node 0.
    prog = write_prog(net, 'pool_out.py', POOL)
    r = salloc(net, ['-N2', '-w', 'n1,n2'], launcher(prog))
    assert r.returncode == 0, r.stderr
    m = re.search(r"\[n0\] cpus (\d+) nodes (\[.*?\]) alloc (\S+)", r.stdout)
    assert m and m[2] == "['n0', 'n1', 'n2']", r.stdout
    # cpu_count() is the allocation's; the launcher's host runs the program
    # but gets no worker by turn.
    assert int(m[1]) == alloc_cpus(m[3])
    assert "[n0] hosts ['n1', 'n2']" in r.stdout
    assert '[n2] hello from n2' in r.stdout


def test_srun_cannot_start(net):
    # The launcher asks for a node outside the job (n2 of an n[0-1] allocation):
    # srun fails, dragon says so and exits at once, nothing is left.
    prog = write_prog(net, 'never.py', PRELUDE + '''
        print('program ran')
    ''')
    r = salloc(net, ['-N2'], ['sh', '-c', 'SLURM_JOB_NODELIST="n[0-2]" SLURM_NODELIST="n[0-2]" '
                              'exec "$@"', 'sh', *launcher(prog)], timeout=60)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert 'program ran' not in r.stdout
    assert 'dragon: could not start the run on n1, n2 (srun exited with status 1)' in r.stderr
    assert 'srun: error:' in r.stderr                # srun's own reason is shown too
    assert r.seconds < 30, r.seconds
    print(f'failed bring-up: {r.seconds:.1f} s')


LONG = PRELUDE + '''
    def forever():
        time.sleep(600)

    if __name__ == '__main__':
        ps = [mp.Process(target=forever, policy=Policy(node=i % 3)) for i in range(6)]
        for p in ps:
            p.start()
        print('started', flush=True)
        time.sleep(600)
'''


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGKILL], ids=['SIGTERM', 'SIGKILL'])
def test_launcher_ends_or_is_killed(net, sig):
    # The job outlives the launcher (the shell waits for its stdin to close), so what
    # ends the nodes is dragon_mp (and srun), not the end of the allocation.
    prog = write_prog(net, 'long.py', LONG)
    script = '"$@" & echo LAUNCHER=$!; wait; read x'
    p = net.popen(0, ['salloc', '--quiet', '-N3', 'sh', '-c', script, 'sh', *launcher(prog)],
                  sysfs=False, cwd=ROOT, env=_env(net), stdin=subprocess.PIPE,
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pid = int(p.stdout.readline().strip().split('=', 1)[1])
        run = p.stdout.readline().strip().split('RUN=', 1)[1]
        net.runs.append(run)
        assert p.stdout.readline().strip() == '[n0] started'
        assert len(run_processes(run)) >= 6
        assert any(run in s for s in our_segments())
        t0 = time.monotonic()
        os.kill(pid, sig)
        def gone():
            return (not run_processes(run) and not slurm_leftovers(net)
                    and not any(run in s for s in our_segments()))
        assert wait_until(gone, 30), (run_processes(run), slurm_leftovers(net),
                                      [s for s in our_segments() if run in s])
        print(f'{signal.Signals(sig).name}: everything gone after {time.monotonic() - t0:.1f} s')
    finally:
        try:
            p.communicate(timeout=30)            # closes stdin: the shell, then salloc, end
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate(timeout=30)

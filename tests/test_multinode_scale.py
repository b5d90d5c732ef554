"""Eight nodes (issue: "Many nodes, fast and exact", Scale): bring-up and
teardown of 1, 2, 4 and 8 nodes under the real launcher (timed and reported
at the end of the session, so the growth with N shows in every CI log), a
Pool spread over all eight, and traffic between every pair of nodes.

bench/multinode.py times the same bring-up up to 16 nodes; docs/design.md
("Many nodes", "At 1,000 nodes") says how it grows.
"""

import os
import re
import subprocess
import time

import pytest

from conftest import wait_until
from multinode import (PRELUDE, ROOT, _env, cluster_fixture, dragon_argv, no_leaks_fixture,
                       run_dragon, run_processes, write_prog)

N = 8
net = cluster_fixture(N, 'dms')
no_leaks = no_leaks_fixture()

TIMES = {}      # nodes -> (bring-up s, teardown s)


@pytest.fixture(scope='module', autouse=True)
def report_times(request):
    yield
    if not TIMES:
        return
    tr = request.config.pluginmanager.get_plugin('terminalreporter')
    lines = ['bring-up / teardown under the launcher (network-namespace hosts, ssh):'] + [
        f'  {n} node{"s" if n > 1 else " "}: bring-up {up:5.2f} s   teardown {down:5.2f} s'
        for n, (up, down) in sorted(TIMES.items())]
    if tr is not None:
        tr.section('multi-node scale')
        for line in lines:
            tr.write_line(line)


HELLO = PRELUDE + '''
    if __name__ == '__main__':
        print('START', time.time(), flush=True)
        q = mp.Queue()
        q.put('hello')
        assert q.get(timeout=30) == 'hello'
        print('nodes', len(os.environ.get('DRAGON_MP_NODES', 'x').split(',')))
        print('END', time.time(), flush=True)
'''


@pytest.mark.parametrize('n', [1, 2, 4, 8])
def test_bringup_and_teardown(net, n):
    # Bring-up: launcher start to the program's first line (every node
    # started, its agent up and peered); teardown: the program's last line
    # to the launcher's exit (every node's processes ended, memory removed).
    prog = write_prog(net, 'hello.py', HELLO)
    hostfile = os.path.join(net.tmpdir, f'hosts{n}')
    with open(hostfile, 'w') as f:
        f.write('\n'.join(net.hosts[:n]) + '\n')
    argv = dragon_argv(net, prog)
    argv[argv.index('--hostfile') + 1] = hostfile
    t0 = time.time()
    r = net.run(0, argv, timeout=180, cwd=ROOT, env=_env())
    t1 = time.time()
    net.runs.extend(set(re.findall(r'RUN=(r[0-9a-f-]+)', r.stdout)))
    assert r.returncode == 0, (r.stdout, r.stderr)
    marks = dict(line.split()[:2] for line in r.stdout.splitlines()
                 if line.startswith(('START', 'END', 'nodes')))
    assert marks['nodes'] == str(n)
    up, down = float(marks['START']) - t0, t1 - float(marks['END'])
    TIMES[n] = (up, down)
    # Bounds a user would call broken, not a benchmark (that is bench/multinode.py).
    assert up < 60 and down < 30, TIMES[n]


def test_pool_spreads_over_eight_nodes(net):
    r = run_dragon(net, PRELUDE + '''
    def init(barrier):
        global BARRIER
        BARRIER = barrier

    def meet(i):
        BARRIER.wait(120)       # each of the 16 workers holds one task at once
        return socket.gethostname()

    def square(i):
        return i * i

    if __name__ == '__main__':
        # 2 workers per node (each node has 2 CPUs: cpu_count() is 16).
        with mp.Pool(16, initializer=init, initargs=(mp.Barrier(16),)) as pool:
            hosts = pool.map(meet, range(16), chunksize=1)
            assert pool.map(square, range(2000), chunksize=7) == [i * i for i in range(2000)]
        print('hosts', sorted(set(hosts)), max(hosts.count(h) for h in hosts))
    ''', timeout=240)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert 'hosts %s 2' % sorted(net.hosts) in r.stdout, r.stdout


def test_every_pair_of_nodes_exchanges_messages(net):
    # One process per node, each with a Queue of its own node (made in that
    # process, so owned there); each puts into every other's Queue: 56
    # ordered node pairs, each with its own data connection.
    r = run_dragon(net, PRELUDE + '''
    def member(i, n, registry, inbox_of_head):
        mine = mp.Queue()
        registry.put((i, mine))
        queues = inbox_of_head.get(timeout=120)
        for j, q in queues.items():
            if j != i:
                for k in range(20):
                    q.put((i, k, os.urandom(1000 * (k + 1))))
        got = {}
        for _ in range((n - 1) * 20):
            src, k, payload = mine.get(timeout=120)
            assert len(payload) == 1000 * (k + 1)
            assert k == got.get(src, -1) + 1, (src, k, got.get(src))   # per-sender order
            got[src] = k
        assert sorted(got) == [j for j in range(n) if j != i], got
        registry.put((i, socket.gethostname()))

    if __name__ == '__main__':
        n = 8
        registry = mp.Queue()
        inboxes = [mp.Queue() for _ in range(n)]
        ps = [mp.Process(target=member, args=(i, n, registry, inboxes[i]), policy=Policy(node=i))
              for i in range(n)]
        for p in ps:
            p.start()
        queues = dict(registry.get(timeout=120) for _ in range(n))
        for q in inboxes:
            q.put(queues)
        done = dict(registry.get(timeout=240) for _ in range(n))
        for p in ps:
            p.join(60)
        print('done', [done[i] for i in range(n)], [p.exitcode for p in ps])
    ''', timeout=300)
    assert r.returncode == 0, (r.stdout, r.stderr)
    hosts = [f'n{i}' for i in range(N)]
    assert f'done {hosts} {[0] * N}' in r.stdout, (r.stdout, r.stderr)


# The launch tree, made deep on purpose: with --fanout 2 the launcher starts
# n1 and n5; n1 starts n2 and n4, n2 starts n3; n5 starts n6 and n7.
TREE = {0: 2, 1: 2, 2: 1, 3: 0, 4: 0, 5: 2, 6: 0, 7: 0}
SUBTREE_OF_N1 = (1, 2, 3, 4)


def tree_argv(net, prog):
    return dragon_argv(net, prog, label=True, extra=('--fanout', '2'))


TREE_PROG = PRELUDE + '''
    def launch_children(pid):
        """The launch commands (ssh) that process pid started."""
        n = 0
        for entry in os.listdir('/proc'):
            try:
                with open(f'/proc/{entry}/stat') as f:
                    fields = f.read().rsplit(')', 1)[1].split()
                with open(f'/proc/{entry}/comm') as f:
                    comm = f.read().strip()
            except (OSError, IndexError):
                continue
            n += int(fields[1]) == pid and comm == 'ssh'
        return n

    def report(i):
        # A node's processes are children of its dragon_mp.node (node 0's: of the launcher).
        print('node', i, 'starts', launch_children(os.getppid()), flush=True)

    if __name__ == '__main__':
        report(0)
        ps = [mp.Process(target=report, args=(i,), policy=Policy(node=i)) for i in range(1, 8)]
        for p in ps:
            p.start()
        for p in ps:
            p.join(60)
        print('exit', [p.exitcode for p in ps])
'''


def test_launch_tree(net):
    # Every node is started by its parent in the tree and reached over its
    # relays: output lines keep their host's label, the run ends everywhere.
    prog = write_prog(net, 'tree.py', TREE_PROG)
    r = net.run(0, tree_argv(net, prog), timeout=180, cwd=ROOT, env=_env())
    net.runs.extend(set(re.findall(r'RUN=(r[0-9a-f-]+)', r.stdout)))
    assert r.returncode == 0, (r.stdout, r.stderr)
    for i, k in TREE.items():
        assert f'[n{i}] node {i} starts {k}\n' in r.stdout, (i, r.stdout, r.stderr)
    assert f'exit {[0] * 7}' in r.stdout, r.stdout


def test_relay_cut_loses_its_subtree_only(net):
    # n1 relays for n2..n4: cut off, it is lost, and so are the nodes it
    # started (each ends its part when it loses the node that started it);
    # n5..n7 stay in the run.
    prog = write_prog(net, 'treecut.py', PRELUDE + '''
    def sleeper(q):
        q.put(socket.gethostname())
        time.sleep(600)

    if __name__ == '__main__':
        q = mp.Queue()
        ps = {i: mp.Process(target=sleeper, args=(q,), policy=Policy(node=i)) for i in (1, 2, 3, 4, 6)}
        for p in ps.values():
            p.start()
        print('up', sorted(q.get(timeout=60) for _ in ps), flush=True)
        print('cut now', flush=True)
        for i in (1, 2, 3, 4):        # each ends when its node is lost
            ps[i].join(60)
        # The launcher reports what it knows when the program ends: end only
        # once the test has read its report of all four (n2..n4 may end
        # their processes before node 0 takes in their goodbye).
        go = sys.argv[1]
        deadline = time.monotonic() + 60
        while not os.path.exists(go) and time.monotonic() < deadline:
            time.sleep(0.05)
        print('ended', sorted({ps[i].exitcode for i in (2, 3, 4)}), 'n1', ps[1].exitcode,
              'n6 alive', ps[6].is_alive(), flush=True)
        ps[6].terminate()
        ps[6].join(30)
        print('n6', ps[6].exitcode, flush=True)
    ''')
    go = os.path.join(net.tmpdir, 'treecut.go')
    p = net.popen(0, tree_argv(net, prog) + [go], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE, text=True)
    try:
        run = p.stdout.readline().strip().split('=', 1)[1]
        net.runs.append(run)
        assert p.stdout.readline().strip() == "[n0] up ['n1', 'n2', 'n3', 'n4', 'n6']"
        assert p.stdout.readline().strip() == '[n0] cut now'
        net.cut(1)
        err = ''
        while not all(f'node {i} (n{i}) lost' in err for i in SUBTREE_OF_N1):
            line = p.stderr.readline()      # the launcher ends the run 5 s after the first
            if not line:
                break
            err += line
        open(go, 'w').close()
        out, rest = p.communicate(timeout=120)
        err += rest
    finally:
        net.heal(1)
    for i in SUBTREE_OF_N1:
        assert f'node {i} (n{i}) lost' in err, (i, out, err)
    for i in (5, 6, 7):
        assert f'node {i} (n{i}) lost' not in err, (i, out, err)
    # They ended with their nodes (SIGTERM in the node's teardown, or -9 if
    # the node was gone before it could say so).
    assert re.search(r'\[n0\] ended \[(-15|-9|-15, -9)\] n1 -9 n6 alive True', out), (out, err)
    assert '[n0] n6 -15' in out, (out, err)
    assert wait_until(lambda: not run_processes(run), 30), run_processes(run)

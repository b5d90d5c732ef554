"""dragon_mp.native.ProcessGroup across three network-namespace nodes (issue 20):
executables and Python targets placed round-robin or by policy, their output
forwarded and labelled by node, PIPE streams through the relay, exit codes and
signals as the executable had them, stop() of a member ignoring SIGTERM on
another node, restarts there, and a missing executable. Nothing of a run is
left on any node (no_leaks)."""

import os
import re
import shutil

import pytest

from multinode import PRELUDE, ROOT, _env, cluster_fixture, dragon_argv, no_leaks_fixture, run_dragon

net = cluster_fixture(3, 'dmp')
no_leaks = no_leaks_fixture()

NATIVE = PRELUDE + '''
    import signal, threading
    from dragon_mp.native import ProcessGroup, ProcessTemplate, PIPE, DEVNULL
'''


def check(r):
    assert r.returncode == 0, (r.stdout, r.stderr)


def test_executables_spread_over_the_nodes_with_labelled_output(net):
    r = run_dragon(net, NATIVE + '''
    def where(i):
        print('python member', i, 'on', socket.gethostname(), flush=True)

    if __name__ == '__main__':
        pg = ProcessGroup()
        pg.add_process(6, ProcessTemplate('sh', args=('-c', 'echo "exec member on $(hostname)"')))
        pg.add_process(3, ProcessTemplate(where, args=(7,)))
        pg.init()
        pg.start()
        pg.join(120)
        print('codes', sorted(c for _, c in pg.exit_status), flush=True)
        pg.close()
    ''', label=True)
    check(r)
    assert '[n0] codes [0, 0, 0, 0, 0, 0, 0, 0, 0]' in r.stdout, r.stdout
    # Every line comes labelled with the node the member ran on; round-robin
    # puts two executables and one Python member on each node.
    execs = re.findall(r'^\[(n\d)\] exec member on (n\d)$', r.stdout, re.M)
    assert sorted(execs) == sorted([(n, n) for n in net.hosts for _ in range(2)]), r.stdout
    pys = re.findall(r'^\[(n\d)\] python member 7 on (n\d)$', r.stdout, re.M)
    assert sorted(pys) == sorted([(n, n) for n in net.hosts]), r.stdout


def test_pipes_files_and_exit_status_on_every_node(net):
    r = run_dragon(net, NATIVE + '''
    from dragon_mp.placement import Policy
    if __name__ == '__main__':
        data = bytes(range(256)) * 4096 + b'end'          # 1 MiB and a tail: many chunks
        for node in range(3):
            pg = ProcessGroup()
            pg.add_process(1, ProcessTemplate('cat', stdin=PIPE, stdout=PIPE, policy=Policy(node=node)))
            pg.add_process(1, ProcessTemplate('sh', args=('-c', 'echo to-err >&2; hostname; exit 3'),
                                              stdout=PIPE, stderr=f'err{node}.txt', stdin=DEVNULL,
                                              cwd=os.environ['WORKDIR'], policy=Policy(node=node)))
            pg.init()
            pg.start()
            # cat waits for its input, so it is running; sh may have ended already.
            cat, = [puid for puid in pg.puids if pg.pipes(puid).stdin is not None]
            p = pg.pipes(cat)
            def feed():                 # cat writes while it is fed: read meanwhile
                p.stdin.write(data)
                p.stdin.close()
            feeder = threading.Thread(target=feed)
            feeder.start()
            assert p.stdout.read() == data
            feeder.join()
            pg.join(60)
            assert sorted(c for _, c in pg.exit_status) == [0, 3], pg.exit_status
            sh, = [puid for puid, code in pg.exit_status if code == 3]
            assert pg.pipes(sh).stdout.read().decode().strip() == f'n{node}'     # open after its exit
            with open(os.path.join(os.environ['WORKDIR'], f'err{node}.txt')) as f:
                assert f.read() == 'to-err\\n'
            pg.close()
        # A signal ends the executable on another node: the group sees that signal.
        pg = ProcessGroup()
        pg.add_process(1, ProcessTemplate('sleep', args=('60',), stdout=PIPE, policy=Policy(node=1)))
        pg.add_process(1, ProcessTemplate('sleep', args=('60',), policy=Policy(node=2)))
        pg.init()
        pg.start()
        time.sleep(0.5)
        pg.send_signal(signal.SIGUSR1)
        pg.join(60)
        assert [c for _, c in pg.exit_status] == [-signal.SIGUSR1] * 2, pg.exit_status
        # Why, as the member's node saw it (the tracer of its agent).
        assert all(r.startswith('killed by SIGUSR1') for _, r in pg.exit_reasons), pg.exit_reasons
        piped = [puid for puid, _ in pg.exit_status if pg.pipes(puid).stdout is not None]
        assert len(piped) == 1 and pg.pipes(piped[0]).stdout.read() == b''
        pg.close()
        print('PIPES OK', flush=True)
    '''.replace("os.environ['WORKDIR']", repr(net.tmpdir)))
    check(r)
    assert 'PIPES OK' in r.stdout


def test_stop_restart_and_walltime_on_other_nodes(net):
    r = run_dragon(net, NATIVE + '''
    from dragon_mp.placement import Policy
    if __name__ == '__main__':
        # A member ignoring SIGTERM on node 2, one with a PIPE on node 1: stop()
        # sends SIGTERM, then SIGKILL after the patience.
        pg = ProcessGroup()
        pg.add_process(1, ProcessTemplate('sh', args=('-c', 'trap "" TERM; echo ready; exec sleep 60'),
                                          stdout=PIPE, policy=Policy(node=2)))
        pg.add_process(1, ProcessTemplate('sleep', args=('60',), policy=Policy(node=1)))
        pg.init()
        pg.start()
        stubborn = pg.puids[0]
        assert pg.pipes(stubborn).stdout.readline() == b'ready\\n'
        t = time.monotonic()
        pg.stop(patience=1.0)
        took = time.monotonic() - t
        assert 0.9 <= took < 20, took
        assert sorted(c for _, c in pg.exit_status) == sorted([-signal.SIGKILL, -signal.SIGTERM]), \\
            pg.exit_status
        assert sorted(r.split(' from ')[0] for _, r in pg.exit_reasons) == [
            'killed by SIGKILL', 'killed by SIGTERM'], pg.exit_reasons
        pg.close()
        # Restarts of members that exit at once, on the other nodes.
        pg = ProcessGroup(restart=True, policy=Policy(node=1))
        pg.add_process(2, ProcessTemplate('sh', args=('-c', 'exit 1')))
        pg.init()
        pg.start()
        deadline = time.monotonic() + 60
        while pg.restarts < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        pg.stop()
        assert pg.restarts >= 6 and len(pg.exit_status) == pg.restarts + 2, (pg.restarts, pg.exit_status)
        assert {c for _, c in pg.exit_status} <= {1, -signal.SIGTERM}
        pg.close()
        # The walltime stops members on other nodes.
        pg = ProcessGroup(walltime=1.0)
        pg.add_process(4, ProcessTemplate('sleep', args=('60',)))
        pg.init()
        t = time.monotonic()
        pg.start()
        pg.join(60)
        assert 0.9 <= time.monotonic() - t < 20
        assert [c for _, c in pg.exit_status] == [-signal.SIGTERM] * 4
        pg.close()
        # A missing executable: nothing starts anywhere.
        pg = ProcessGroup()
        pg.add_process(2, ProcessTemplate('sleep', args=('60',)))
        pg.add_process(1, ProcessTemplate('no-such-program-here'))
        pg.init()
        try:
            pg.start()
        except FileNotFoundError as e:
            print('missing:', e, flush=True)
        assert pg.puids == [] and pg.exit_status == []
        pg.close()
        print('GROUPS OK', flush=True)
    ''')
    check(r)
    assert 'GROUPS OK' in r.stdout and "missing: executable 'no-such-program-here'" in r.stdout


# -- C and C++ programs on other nodes (issue 20: "all of it on 3 netns nodes") --

@pytest.fixture(scope='module')
def c_programs(net):
    from dragon_mp import capi
    from test_capi import PROBE, _compile
    if not (shutil.which('gcc') and shutil.which('g++')
            and os.path.exists(os.path.join(capi.library_dir(), 'libdragon_mp.so'))):
        pytest.skip('needs gcc, g++ and dragon_mp built with its C API')
    probe = os.path.join(net.tmpdir, 'probe.c')
    with open(probe, 'w') as f:
        f.write(PROBE)
    exes = {'probe': os.path.join(net.tmpdir, 'probe'), 'echo': os.path.join(net.tmpdir, 'echo')}
    _compile('gcc', probe, exes['probe'])
    _compile('g++', os.path.join(ROOT, 'examples', 'echo.cpp'), exes['echo'], '-std=c++17')
    return exes     # the nodes share this file system: the same paths everywhere


def test_c_programs_on_other_nodes_reach_queues_and_locks_of_node_0(net, c_programs):
    r = run_dragon(net, NATIVE + '''
    import json, queue
    from dragon_mp import _core
    from dragon_mp.placement import Policy
    ECHO, PROBE = %r, %r

    def pattern(n, seed):
        return bytes((i * 31 + seed) & 0xff for i in range(min(n, 4096))) * (n // 4096 + 1)

    def in_use():
        from dragon_mp import _runtime
        _runtime.current()
        return json.loads(_core.gocore().RuntimeStats())['in_use']

    if __name__ == '__main__':
        base = in_use()
        for node in (1, 2):
            # The C++ echo on another node: 0 B to 64 MiB there and back, under the Lock of node 0.
            to_c, from_c, lock = mp.Queue(), mp.Queue(), mp.Lock()
            pg = ProcessGroup()
            pg.add_process(1, ProcessTemplate(ECHO, args=(to_c.descriptor(), from_c.descriptor(),
                                                          lock.descriptor()), policy=Policy(node=node)))
            pg.init()
            pg.start()
            for i, n in enumerate([1, 255, 257, 65536, 1 << 20, 64 << 20, 0]):
                data = pattern(n, i)[:n]
                to_c.put_bytes(data)
                back = from_c.get_bytes(timeout=120)
                assert back == data, (node, n, len(back))
            pg.join(60)
            assert pg.exit_status[0][1] == 0, pg.exit_status
            pg.close()
            assert lock.acquire(timeout=10)
            # Timeouts and a full bounded queue, from another node.
            empty, full = mp.Queue(), mp.Queue(1)
            full.put_bytes(b'x')
            pg = ProcessGroup()
            pg.add_process(1, ProcessTemplate(PROBE, args=('timeouts', empty.descriptor(), full.descriptor()),
                                              stdout=PIPE, policy=Policy(node=node)))
            pg.init()
            pg.start()
            pg.join(60)                 # (its output is short: it waits in the pipe's channel)
            puid, code = pg.exit_status[0]
            out = pg.pipes(puid).stdout.read().decode()
            assert code == 0, out
            assert empty.get_bytes(timeout=10) == b'done'
            pg.close()
            lock.release()
        # Every queue and lock the C programs closed, and the Python side dropped, is freed on node 0.
        del to_c, from_c, lock, empty, full
        deadline = time.monotonic() + 30
        while in_use() > base and time.monotonic() < deadline:
            time.sleep(0.1)
        assert in_use() <= base, (in_use(), base)
        # A C sender on node 2 SIGKILLed while it sends 64 MiB messages to node 0: the queue keeps
        # working and node 0's pool goes back to what it held.
        q = mp.Queue()
        pg = ProcessGroup()
        pg.add_process(1, ProcessTemplate(PROBE, args=('flood', q.descriptor(), str(64 << 20)),
                                          policy=Policy(node=2)))
        pg.init()
        pg.start()
        assert len(q.get_bytes(timeout=120)) == 64 << 20
        pg.kill()
        pg.join(60)
        assert pg.exit_status[0][1] == -signal.SIGKILL, pg.exit_status
        pg.close()
        while True:
            try:
                assert len(q.get_bytes(timeout=1)) == 64 << 20
            except queue.Empty:
                break
        q.put_bytes(b'after')
        assert q.get_bytes(timeout=10) == b'after'
        # Node 2's head releases the reference the killed process held on q (its ledger records
        # it): once this process drops q too, node 0's pool is back where it was.
        del q
        deadline = time.monotonic() + 30
        while in_use() > base and time.monotonic() < deadline:
            time.sleep(0.1)
        assert in_use() <= base, (in_use(), base)
        print('C OK', flush=True)
    ''' % (c_programs['echo'], c_programs['probe']))
    check(r)
    assert 'C OK' in r.stdout


def test_worker_group_example_over_the_nodes(net, c_programs):
    # examples/worker_group.py under the launcher: its 8 C workers go round-robin over the 3 nodes,
    # restart there, and reach the queues of node 0.
    r = net.run(0, dragon_argv(net, os.path.join(ROOT, 'examples', 'worker_group.py'), '300', net.tmpdir,
                               label=True), timeout=300, cwd=ROOT, env=_env())
    assert r.returncode == 0, (r.stdout, r.stderr)
    from test_capi import check_worker_group_output
    check_worker_group_output(r.stdout, 300)
    assert r.stdout.startswith('[n0] 300 answers'), r.stdout

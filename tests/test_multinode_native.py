"""dragon_mp.native.ProcessGroup across three network-namespace nodes (issue 20):
executables and Python targets placed round-robin or by policy, their output
forwarded and labelled by node, PIPE streams through the relay, exit codes and
signals as the executable had them, stop() of a member ignoring SIGTERM on
another node, restarts there, and a missing executable. Nothing of a run is
left on any node (no_leaks)."""

import re

from multinode import PRELUDE, cluster_fixture, no_leaks_fixture, run_dragon

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
            cat, sh = pg.puids
            p = pg.pipes(cat)
            def feed():                 # cat writes while it is fed: read meanwhile
                p.stdin.write(data)
                p.stdin.close()
            feeder = threading.Thread(target=feed)
            feeder.start()
            assert p.stdout.read() == data
            feeder.join()
            assert pg.pipes(sh).stdout.read().decode().strip() == f'n{node}'
            pg.join(60)
            assert sorted(c for _, c in pg.exit_status) == [0, 3], pg.exit_status
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

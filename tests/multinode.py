"""Helpers of the multi-node tests: a cluster of network-namespace hosts with
sshd (tests/cluster.py), programs run under the real `dragon` launcher on
n0, and the check that nothing of a test's runs is left on any node.

A test module makes its cluster with `cluster_fixture(n, prefix)` and uses
`run_dragon`, `dragon_argv`, `write_prog` with it.
"""

import os
import re
import sys
import textwrap

import pytest

import cluster as cl
from conftest import child_pids, our_segments, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cluster_fixture(n, prefix):
    """A module-scoped fixture: n hosts n0..n{n-1} with sshd and a hostfile."""
    @pytest.fixture(scope='module')
    def net():
        cl.require_netns()
        cl.require_sshd()
        c = cl.NetnsCluster(n, prefix=prefix)
        try:
            c.start_sshd()
            c.hostfile = os.path.join(c.tmpdir, 'hosts')
            with open(c.hostfile, 'w') as f:
                f.write('# the nodes of the test cluster\n' + '\n'.join(c.hosts) + '\n')
            c.infra_pids = set(_children())
            yield c
        finally:
            c.close()
    return net


def _children():
    return child_pids()


def run_processes(marker):
    """Pids of live processes whose environment or command line holds
    `marker` (a run id): the run's processes and the nodes' dragon_mp.node."""
    pids = []
    needle = marker.encode()
    for entry in os.listdir('/proc'):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f'/proc/{entry}/stat', 'rb') as f:
                if f.read().rsplit(b')', 1)[1].split()[0] == b'Z':
                    continue            # a zombie is gone, only not reaped yet
            for what in ('environ', 'cmdline'):
                with open(f'/proc/{entry}/{what}', 'rb') as f:
                    if needle in f.read():
                        pids.append(int(entry))
                        break
        except (OSError, IndexError):
            continue
    return pids


def no_leaks_fixture():
    """An autouse fixture for a module with a `net` fixture: nothing of the test's runs left."""
    @pytest.fixture(autouse=True)
    def no_leaks(net):
        yield from _no_leaks(net)
    return no_leaks


def _no_leaks(net):
    """This module's leak check: nothing of the test's runs on any node (the
    cluster's own sshd processes are pytest's children for the whole module)."""
    before = our_segments()
    net.runs = []
    yield
    def leftovers():
        segs = sorted(s for s in our_segments() - before
                      if any(r in s for r in net.runs))
        procs = [p for r in net.runs for p in run_processes(r)]
        kids = [p for p in _children() if p not in net.infra_pids]
        return segs, procs, kids
    # Only this test's runs: other runs on the machine are not ours to judge.
    # A test that could not learn its run id gets every new segment judged.
    if not net.runs:
        net.runs.extend({seg.split('.')[1] for seg in our_segments() - before} or {'-none-'})
    assert wait_until(lambda: leftovers() == ([], [], []), 20), f'left behind: {leftovers()}'


def dragon_argv(net, prog, *args, label=False, extra=()):
    argv = [sys.executable, '-m', 'dragon_mp.launcher', '--hostfile', net.hostfile,
            '--launch', f'ssh -F {net.ssh_config} {{host}} {{command}}', *extra]
    if label:
        argv.append('--label')
    return argv + [prog, *args]


def write_prog(net, name, source):
    path = os.path.join(net.tmpdir, name)
    with open(path, 'w') as f:
        f.write(textwrap.dedent(source))
    return path


def run_dragon(net, source, *args, label=False, timeout=180, name='prog.py'):
    prog = write_prog(net, name, source)
    r = net.run(0, dragon_argv(net, prog, *args, label=label), timeout=timeout, cwd=ROOT,
                env=_env())
    net.runs.extend(set(re.findall(r'RUN=(r[0-9a-f-]+)', r.stdout)))
    return r


def _env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(('DRAGON_MP_', 'SLURM_'))}
    env['PYTHONUNBUFFERED'] = '1'
    return env


PRELUDE = '''
    import os, socket, sys, time
    import dragon_mp as mp
    import dragon_mp.connection
    from dragon_mp.placement import Policy
    if __name__ == '__main__':
        print('RUN=' + os.environ['DRAGON_MP_RUN'], flush=True)
'''



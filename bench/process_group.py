"""Starting and stopping 1,000 processes: dragon_mp.native.ProcessGroup on one node and over four
(network-namespace hosts under the real launcher, tests/cluster.py), against stdlib's subprocess
on one node, interleaved per round.

    sudo python bench/process_group.py                    # 3 rounds, 1,000 processes
    sudo python bench/process_group.py --quick            # 1 round, 200 processes
    sudo python bench/process_group.py --md bench/results/process_group.md --json bench/results/process_group.json

Each member is an executable (`sleep 600`) that stays up until the group stops it: a row's start time
is `ProcessGroup.start()` (every member running) and its stop time `ProcessGroup.stop()` (SIGTERM to
every member, every exit reported); stdlib's row is `subprocess.Popen` for each, then terminate() and
wait() for each, in a process that has not loaded dragon_mp. A Python-target row (a callable that
sleeps) shows what a member that is a dragon_mp process costs. All "nodes" share this machine's CPUs:
four nodes do not bring four times the CPUs here. Tables to stdout, progress to stderr.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, 'tests'))

PROG = '''
import json, os, signal, sys, time
import dragon_mp as mp
from dragon_mp.native import ProcessGroup, ProcessTemplate
from dragon_mp.placement import Policy

def nap():
    time.sleep(600)

if __name__ == '__main__':
    n, where, kind = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    policy = Policy(distribution='local') if where == 'local' else None
    target = nap if kind == 'python' else 'sleep'
    pg = ProcessGroup(policy=policy)
    pg.add_process(n, ProcessTemplate(target, args=() if kind == 'python' else ('600',)))
    pg.init()
    t0 = time.perf_counter()
    pg.start()
    t1 = time.perf_counter()
    nodes = len(set(mp.placement.nodes()))
    pg.stop(patience=30)
    t2 = time.perf_counter()
    codes = [c for _, c in pg.exit_status]
    assert len(codes) == n and set(codes) == {-signal.SIGTERM}, set(codes)
    pg.close()
    print('BENCH ' + json.dumps({'start': t1 - t0, 'stop': t2 - t1}), flush=True)
'''

STDLIB = '''
import json, subprocess, sys, time
n = int(sys.argv[1])
t0 = time.perf_counter()
ps = [subprocess.Popen(['sleep', '600']) for _ in range(n)]
t1 = time.perf_counter()
for p in ps:
    p.terminate()
for p in ps:
    p.wait()
t2 = time.perf_counter()
assert all(p.returncode == -15 for p in ps)
print('BENCH ' + json.dumps({'start': t1 - t0, 'stop': t2 - t1}), flush=True)
'''


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--quick', action='store_true')
    ap.add_argument('--rounds', type=int)
    ap.add_argument('-n', type=int, help='processes per row (default 1000; --quick 200)')
    ap.add_argument('--md')
    ap.add_argument('--json')
    args = ap.parse_args()
    n = args.n or (200 if args.quick else 1000)
    n_python = n // 5
    rounds = args.rounds or (1 if args.quick else 3)
    import cluster as cl
    from multinode import _env, dragon_argv
    c = cl.NetnsCluster(4, prefix='dmb')
    rows = {}
    try:
        c.start_sshd()
        c.hostfile = os.path.join(c.tmpdir, 'hosts')
        with open(c.hostfile, 'w') as f:
            f.write('\n'.join(c.hosts) + '\n')
        prog = os.path.join(c.tmpdir, 'pg.py')
        with open(prog, 'w') as f:
            f.write(PROG)
        env = _env()
        env['PYTHONPATH'] = ROOT
        cases = [('subprocess.Popen, 1 node', n, None),
                 ('ProcessGroup, executables, 1 node', n, ('local', 'exec')),
                 ('ProcessGroup, executables, 4 nodes', n, ('spread', 'exec')),
                 ('ProcessGroup, Python targets, 1 node', n_python, ('local', 'python')),
                 ('ProcessGroup, Python targets, 4 nodes', n_python, ('spread', 'python'))]
        for rnd in range(rounds):
            order = cases if rnd % 2 == 0 else cases[::-1]
            for name, count, how in order:
                log(f'round {rnd + 1}/{rounds}: {name} ({count})')
                if how is None:
                    argv = [sys.executable, '-c', STDLIB, str(count)]
                    r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
                else:
                    r = c.run(0, dragon_argv(c, prog, str(count), *how), timeout=900, cwd=ROOT, env=env)
                got = [json.loads(line[6:]) for line in r.stdout.splitlines() if line.startswith('BENCH ')]
                if r.returncode != 0 or not got:
                    log(f'  FAILED: {r.stderr[-2000:]}')
                    continue
                rows.setdefault(name, {'n': count, 'start': [], 'stop': []})
                rows[name]['start'].append(got[0]['start'])
                rows[name]['stop'].append(got[0]['stop'])
                log(f'  start {got[0]["start"]:.2f} s, stop {got[0]["stop"]:.2f} s')
    finally:
        c.close()
    report(rows, rounds, args)


def report(rows, rounds, args):
    lines = [f'Processes started and stopped (median of {rounds} round(s), interleaved; all nodes share '
             f'this machine\'s {os.cpu_count()} CPUs):', '',
             '| row | processes | start, all (s) | per process (ms) | stop, all (s) | per process (ms) |',
             '|---|--:|--:|--:|--:|--:|']
    for name, r in rows.items():
        start, stop = statistics.median(r['start']), statistics.median(r['stop'])
        lines.append(f'| {name} | {r["n"]} | {start:.2f} | {1000 * start / r["n"]:.2f} | '
                     f'{stop:.2f} | {1000 * stop / r["n"]:.2f} |')
    text = '\n'.join(lines) + '\n'
    print(text)
    if args.md:
        with open(args.md, 'w') as f:
            f.write(f'# bench/process_group.py ({time.strftime("%Y-%m-%d")})\n\n' + text)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'rounds': rounds, 'rows': rows}, f, indent=1)


if __name__ == '__main__':
    main()

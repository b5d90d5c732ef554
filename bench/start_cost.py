"""Where the time of a Process start+join goes: CPU and page faults per start,
for dragon_mp (requester, zygote, children) and stdlib fork (parent, children),
measured in one run, interleaved.

    python bench/start_cost.py [--starts N] [--rounds R]

On a machine with few cores a start+join is bound by the CPU work of all the
processes involved, not by one of them: this splits that work up. Each
(implementation, round) runs in its own subprocess (`--one IMPL`), which does
N start+join pairs of a no-op target after a warm-up and reports:

- dragon_mp: the requester's own CPU and minor faults (getrusage), the
  zygote's (/proc/<zygote>/stat: utime+stime, minflt) and its reaped
  children's (cutime+cstime, cminflt: spares included, since every child was
  a spare first);
- stdlib: the parent's own and its reaped children's (getrusage).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HZ = os.sysconf('SC_CLK_TCK')


def noop():
    pass


def _self():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_minflt


def _children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime, r.ru_minflt


def _proc_stat(pid):
    """(cpu s, minflt, children's cpu s, children's minflt) of pid."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    minflt, cminflt = int(fields[7]), int(fields[8])
    cpu = (int(fields[11]) + int(fields[12])) / HZ
    ccpu = (int(fields[13]) + int(fields[14])) / HZ
    return cpu, minflt, ccpu, cminflt


def run_one(impl, starts):
    if impl == 'dragon_mp':
        import dragon_mp as mp
        from dragon_mp import zygote
    else:
        import multiprocessing
        mp = multiprocessing.get_context('fork')

    def batch(n):
        for _ in range(n):
            p = mp.Process(target=noop)
            p.start()
            p.join()
            if p.exitcode != 0:
                raise RuntimeError('exit code %s' % p.exitcode)

    batch(30)                                   # warm-up (the zygote starts here)
    zpid = zygote.owned_pid() if impl == 'dragon_mp' else None
    if impl == 'dragon_mp' and zpid is None:
        raise RuntimeError('no zygote: processes were started by exec')
    s0, c0 = _self(), _children()
    z0 = _proc_stat(zpid) if zpid else None
    t0 = time.perf_counter()
    batch(starts)
    wall = time.perf_counter() - t0
    s1, c1 = _self(), _children()
    out = {'wall_ms': wall / starts * 1e3,
           'parent_cpu_ms': (s1[0] - s0[0]) / starts * 1e3,
           'parent_faults': (s1[1] - s0[1]) / starts}
    if zpid:
        z1 = _proc_stat(zpid)
        out.update(zygote_cpu_ms=(z1[0] - z0[0]) / starts * 1e3,
                   zygote_faults=(z1[1] - z0[1]) / starts,
                   children_cpu_ms=(z1[2] - z0[2]) / starts * 1e3,
                   children_faults=(z1[3] - z0[3]) / starts)
    else:
        out.update(children_cpu_ms=(c1[0] - c0[0]) / starts * 1e3,
                   children_faults=(c1[1] - c0[1]) / starts)
    out['total_cpu_ms'] = sum(v for k, v in out.items() if k.endswith('_cpu_ms'))
    print(json.dumps(out))


ROWS = [('wall_ms', 'start+join, wall', 'ms'),
        ('total_cpu_ms', 'CPU, all processes', 'ms'),
        ('parent_cpu_ms', 'CPU, requester / parent', 'ms'),
        ('zygote_cpu_ms', 'CPU, zygote (request, fork of the spare)', 'ms'),
        ('children_cpu_ms', 'CPU, children (setup, run, exit)', 'ms'),
        ('parent_faults', 'minor faults, requester / parent', ''),
        ('zygote_faults', 'minor faults, zygote', ''),
        ('children_faults', 'minor faults, children', '')]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--starts', type=int, default=300)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--one', choices=['dragon_mp', 'stdlib-fork'])
    a = ap.parse_args()
    if a.one:
        return run_one(a.one, a.starts)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, HERE, os.environ.get('PYTHONPATH', '')]))
    env.pop('DRAGON_MP_RUN', None)
    results = {'dragon_mp': [], 'stdlib-fork': []}
    for r in range(a.rounds):
        order = ['stdlib-fork', 'dragon_mp'] if r % 2 == 0 else ['dragon_mp', 'stdlib-fork']
        for impl in order:
            # -m so that the child's __mp_main__ is this module, found by name
            out = subprocess.run([sys.executable, '-m', 'start_cost', '--one', impl,
                                  '--starts', str(a.starts)], cwd=HERE, env=env,
                                 capture_output=True, text=True, timeout=300)
            if out.returncode != 0:
                sys.exit('%s failed:\n%s' % (impl, out.stderr[-2000:]))
            results[impl].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print('  %-12s round %d: %.2f ms/start' % (impl, r + 1, results[impl][-1]['wall_ms']),
                  file=sys.stderr)
    print('| per start+join (median of %d rounds x %d starts) | stdlib fork | dragon_mp |'
          % (a.rounds, a.starts))
    print('|---|--:|--:|')
    for key, label, unit in ROWS:
        cells = []
        for impl in ('stdlib-fork', 'dragon_mp'):
            vals = [x[key] for x in results[impl] if key in x]
            cells.append(('%.2f %s' % (statistics.median(vals), unit)).strip() if vals else '-')
        print('| %s | %s | %s |' % (label, cells[0], cells[1]))


if __name__ == '__main__':
    main()

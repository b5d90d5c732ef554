"""Process and Pool start of a real program: a main module that imports numpy
and pandas, for stdlib's three start methods and dragon_mp, interleaved.

    python bench/start_imports.py [--rounds R] [--out bench/results/start_imports]

Each (method, repetition) is a fresh program (`--one KIND METHOD`) that
imports its multiprocessing module and then numpy and pandas at the top, in
PEP 8's order (standard library first; a second kind adds scipy and
scikit-learn, where installed), then does the same thing twice:

- 8 x Process(target=f): start all, join all;
- Pool(4): create, map 100 trivial tasks, close, join;

and reports both rounds: the first includes whatever a method does once per
program (dragon_mp's zygote has a template import the program's packages
once, stdlib's forkserver starts its server), the second is what every later
start costs. 'dragon_mp, imported last' is the same program with
`import dragon_mp` after numpy and pandas: its zygote cannot start importing
them while the program does. 'wall' is the whole program, interpreter start
to exit, as the user waits for it.
Then it starts 4 children that sleep and reads their PSS
(/proc/<pid>/smaps_rollup): the memory each child costs when pages shared
with a template process are split among the sharers. A trivial main module
(imports nothing) runs the same rounds for dragon_mp and fork, so that
warm templates are seen not to cost the common case.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

METHODS = ('fork', 'forkserver', 'spawn', 'dragon_mp', 'dragon_mp, imported last')

PROGRAM = '''
import os, sys, time
{head}
{imports}
{tail}

def f():
    pass

def sq(x):
    return x * x

def sleeper(r):
    r.recv()

def pss_kib(pid):
    with open(f'/proc/{{pid}}/smaps_rollup') as fh:
        for line in fh:
            if line.startswith('Pss:'):
                return int(line.split()[1])
    return 0

if __name__ == '__main__':
    method = sys.argv[1]
    ctx = mp.get_context() if method.startswith('dragon_mp') else mp.get_context(method)
    out = {{'process': [], 'pool': []}}
    for _ in range(2):
        t0 = time.perf_counter()
        ps = [ctx.Process(target=f) for _ in range(8)]
        for p in ps:
            p.start()
        for p in ps:
            p.join()
        t1 = time.perf_counter()
        with ctx.Pool(4) as pool:
            pool.map(sq, range(100))
            pool.close()
            pool.join()
        t2 = time.perf_counter()
        out['process'].append(t1 - t0)
        out['pool'].append(t2 - t1)
    pipes = [ctx.Pipe(duplex=False) for _ in range(4)]
    ps = [ctx.Process(target=sleeper, args=(r,)) for r, _ in pipes]
    for p in ps:
        p.start()
    time.sleep(1.0)
    out['pss_kib'] = statistics.mean(pss_kib(p.pid) for p in ps)
    for _, w in pipes:
        w.send(None)
    for p in ps:
        p.join()
    print('RESULT', json.dumps(out))
'''

PROGRAMS = {
    'numpy+pandas': 'import json, statistics\nimport numpy, pandas',
    # The stress case: scipy and scikit-learn too (skipped where not installed).
    'numpy+pandas+sklearn': 'import json, statistics\nimport numpy, pandas, scipy, sklearn.ensemble',
    'trivial': 'import json, statistics',
}
CASES = ([('numpy+pandas', m) for m in METHODS]
         + [('numpy+pandas+sklearn', m) for m in ('fork', 'spawn', 'dragon_mp')]
         + [('trivial', 'fork'), ('trivial', 'dragon_mp')])


def installed(kind):
    if kind != 'numpy+pandas+sklearn':
        return True
    import importlib.util
    return all(importlib.util.find_spec(m) for m in ('scipy', 'sklearn'))


def program(kind, method):
    """The program's source: its multiprocessing module first (PEP 8), or last."""
    mp = 'import dragon_mp as mp' if method.startswith('dragon_mp') else 'import multiprocessing as mp'
    last = method == 'dragon_mp, imported last'
    return PROGRAM.format(head='' if last else mp, imports=PROGRAMS[kind], tail=mp if last else '')


def run_one(kind, method, workdir):
    path = os.path.join(workdir, f'prog_{kind.replace("+", "_")}.py')
    with open(path, 'w') as fh:
        fh.write(program(kind, method))
    env = dict(os.environ)
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, path, method], capture_output=True, text=True,
                       timeout=600, cwd=workdir, env=env)
    wall = time.perf_counter() - t0
    for line in r.stdout.splitlines():
        if line.startswith('RESULT '):
            out = json.loads(line[7:])
            out['wall'] = wall
            return out
    raise RuntimeError(f'{kind} {method} failed: {r.stderr[-2000:]}')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rounds', type=int, default=3, help='repetitions of every program')
    ap.add_argument('--out', default=os.path.join(HERE, 'results', 'start_imports'),
                    help='writes OUT.md and OUT.json')
    args = ap.parse_args()
    import tempfile
    cases = [c for c in CASES if installed(c[0])]
    samples = {c: [] for c in cases}
    with tempfile.TemporaryDirectory() as workdir:
        for rep in range(args.rounds):
            order = cases[rep % len(cases):] + cases[:rep % len(cases)]   # interleaved, rotated
            for case in order:
                samples[case].append(run_one(*case, workdir))
                print(f'rep {rep + 1}/{args.rounds} {case[0]:>12} {case[1]:<10} '
                      f'{samples[case][-1]}', file=sys.stderr, flush=True)

    def med(case, what, i):
        return statistics.median(s[what][i] for s in samples[case]) * 1e3

    rows = []
    for kind in PROGRAMS:
        for method in METHODS:
            case = (kind, method)
            if case not in samples:
                continue
            fork = (kind, 'fork')
            row = {'program': kind, 'method': method,
                   'pss_kib': statistics.median(s['pss_kib'] for s in samples[case]),
                   'wall_s': statistics.median(s['wall'] for s in samples[case])}
            for what in ('process', 'pool'):
                for i, name in enumerate(('first', 'then')):
                    v = med(case, what, i)
                    row[f'{what}_{name}_ms'] = v
                    row[f'{what}_{name}_x_fork'] = v / med(fork, what, i)
            rows.append(row)
    md = ['| program | method | 8 x Process start+join, first / then (ms) | x fork (first / then) '
          '| Pool(4) create+map+close, first / then (ms) | x fork (first / then) | PSS per child '
          '| wall (s) |',
          '|---|---|--:|--:|--:|--:|--:|--:|']
    for r in rows:
        md.append(f"| {r['program']} | {r['method']} "
                  f"| {r['process_first_ms']:.0f} / {r['process_then_ms']:.1f} "
                  f"| {r['process_first_x_fork']:.2f} / {r['process_then_x_fork']:.2f} "
                  f"| {r['pool_first_ms']:.0f} / {r['pool_then_ms']:.1f} "
                  f"| {r['pool_first_x_fork']:.2f} / {r['pool_then_x_fork']:.2f} "
                  f"| {r['pss_kib'] / 1024:.1f} MiB | {r['wall_s']:.2f} |")
    text = '\n'.join(md) + '\n'
    print(text)
    with open(args.out + '.md', 'w') as fh:
        fh.write(f'Median of {args.rounds} interleaved runs, {time.strftime("%Y-%m-%d")}, '
                 f'Python {sys.version.split()[0]}, {os.cpu_count()} CPUs.\n\n' + text)
    with open(args.out + '.json', 'w') as fh:
        json.dump({'rows': rows, 'samples': {f'{k}|{m}': v for (k, m), v in samples.items()}},
                  fh, indent=1)


if __name__ == '__main__':
    if len(sys.argv) > 1 and sys.argv[1] == '--one':
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            print(json.dumps(run_one(sys.argv[2], sys.argv[3], d)))
    else:
        main()

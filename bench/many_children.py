"""Start cost and memory against the number of live children (issue 17, item 4).

    python bench/many_children.py [--n 1000] [--step 50] [--spawn-n 200]
                                  [--out bench/results/many_children]

For dragon_mp, stdlib fork and stdlib spawn, each in a fresh program: start
n processes one after the other, each holding the read end of a Pipe (it
blocks in recv() until the end), so that all of them are alive when the
next one starts. Reported per window of `step` starts: the median time of
one `Process.start()`; at checkpoints: the mean PSS and RSS of a live child
(/proc/<pid>/smaps_rollup: PSS splits a page shared by k processes into k
parts, so it is what each child costs the machine). Then every child is
released and joined. spawn starts a fresh interpreter per child (~15 MB
each, ~60 ms of CPU): it stops at --spawn-n.
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

PROGRAM = r'''
import json, os, statistics, sys, time
method, n, step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if method == 'dragon_mp':
    import dragon_mp as mp
    ctx = mp.get_context()
else:
    import multiprocessing as mp
    ctx = mp.get_context(method)


def hold(r):
    r.recv()


def rollup(pid):
    out = {}
    with open(f'/proc/{pid}/smaps_rollup') as f:
        for line in f:
            key, _, rest = line.partition(':')
            if key in ('Rss', 'Pss'):
                out[key] = int(rest.split()[0])
    return out


if __name__ == '__main__':
    checkpoints = {c for c in (1, 50, 100, 250, 500, 750, 1000, n) if c <= n}
    procs, ends, times, windows, memory = [], [], [], [], []
    for i in range(1, n + 1):
        r, w = ctx.Pipe(duplex=False)
        p = ctx.Process(target=hold, args=(r,))
        t0 = time.perf_counter()
        p.start()
        times.append(time.perf_counter() - t0)
        r.close()
        procs.append(p)
        ends.append(w)
        if i % step == 0:
            windows.append({'live': i, 'start_ms': statistics.median(times[-step:]) * 1e3})
        if i in checkpoints:
            time.sleep(0.5)                  # the children have loaded what they load
            rs = [rollup(q.pid) for q in procs]
            memory.append({'live': i, 'pss_kib': statistics.mean(x['Pss'] for x in rs),
                           'rss_kib': statistics.mean(x['Rss'] for x in rs)})
    for w in ends:
        w.send(None)
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs if p.exitcode]
    print('RESULT', json.dumps({'windows': windows, 'memory': memory}))
'''


def run(method, n, step, workdir):
    path = os.path.join(workdir, 'many_children_prog.py')
    with open(path, 'w') as f:
        f.write(PROGRAM)
    env = dict(os.environ)
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    r = subprocess.run([sys.executable, path, method, str(n), str(step)], capture_output=True,
                       text=True, timeout=3600, cwd=workdir, env=env)
    for line in r.stdout.splitlines():
        if line.startswith('RESULT '):
            return json.loads(line[7:])
    raise RuntimeError(f'{method} failed: {r.stderr[-3000:]}')


def table(results, key, cell):
    """Markdown rows: one per number of live children, one column per method (cell(row) of
    results[method][key] at that number, blank where it has none)."""
    methods = list(results)
    rows = ['| live children | ' + ' | '.join(methods) + ' |', '|--:|' + '--:|' * len(methods)]
    by_live = {m: {r['live']: r for r in results[m][key]} for m in methods}
    for live in sorted({live for m in methods for live in by_live[m]}):
        cells = [cell(by_live[m][live]) if live in by_live[m] else '' for m in methods]
        rows.append(f'| {live} | ' + ' | '.join(cells) + ' |')
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--n', type=int, default=1000)
    ap.add_argument('--step', type=int, default=50)
    ap.add_argument('--spawn-n', type=int, default=200)
    ap.add_argument('--methods', default='dragon_mp,fork,spawn')
    ap.add_argument('--out', default=os.path.join(HERE, 'results', 'many_children'))
    args = ap.parse_args()
    import tempfile
    results = {}
    with tempfile.TemporaryDirectory() as d:
        for method in args.methods.split(','):
            n = min(args.n, args.spawn_n) if method == 'spawn' else args.n
            results[method] = run(method, n, args.step, d)
            print(method, json.dumps(results[method]), file=sys.stderr, flush=True)
    md = [f'{args.n} children started one by one, each alive (blocked in a Pipe recv) until the end; '
          f'{time.strftime("%Y-%m-%d")}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs.', '',
          'Median time of one `Process.start()` over the last %d starts (ms):' % args.step, '']
    md += table(results, 'windows', lambda w: f"{w['start_ms']:.2f}")
    md += ['', 'Memory of one live child, mean PSS / RSS (MiB):', '']
    md += table(results, 'memory', lambda x: f"{x['pss_kib'] / 1024:.1f} / {x['rss_kib'] / 1024:.1f}")
    text = '\n'.join(md) + '\n'
    print(text)
    with open(args.out + '.md', 'w') as f:
        f.write(text)
    with open(args.out + '.json', 'w') as f:
        json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()

"""The plain loops an outside benchmark writes, next to what bench/run.py measures.

    python bench/outside_loops.py [--starts N] [--lock-ops N] [--rounds R]

Two rows of the project's table were not confirmed by an outside run, which
timed them the way a user's script does. This runs those scripts for stdlib
(fork) and dragon_mp, interleaved, R rounds, and prints both ways:

- process start+join: `Process(target=f).start(); join()` in a loop of N. The
  first start of a dragon_mp program also starts its run (pool, zygote: about
  0.1 s), so a loop's mean depends on N; the project's bench warms up first
  and reports the median of many. Printed: first start, median, and the mean
  of the whole loop.
- contended Lock: two processes doing N acquire+release pairs on one Lock,
  (a) released at the same moment by an Event once both are running (the
  bench's way: start not timed), (b) timed from before start() to after the
  last join() (start and join inside the timing, as the outside run did).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def load(impl):
    if impl == 'dragon_mp':
        import dragon_mp
        return dragon_mp
    import multiprocessing
    return multiprocessing.get_context('fork')


def noop():
    pass


def hammer(lock, go, n):
    if go is not None:
        go.wait()
    for _ in range(n):
        lock.acquire()
        lock.release()


def child(impl, starts, ops):
    mp = load(impl)
    times = []
    t_all = time.perf_counter()
    for _ in range(starts):
        t = time.perf_counter()
        p = mp.Process(target=noop)
        p.start()
        p.join()
        times.append(time.perf_counter() - t)
    mean = (time.perf_counter() - t_all) / starts
    lock = mp.Lock()
    go = mp.Event()
    ps = [mp.Process(target=hammer, args=(lock, go, ops)) for _ in range(2)]
    for p in ps:
        p.start()
    time.sleep(0.5)                     # both are waiting on the Event
    t = time.perf_counter()
    go.set()
    for p in ps:
        p.join()
    together = 2 * ops / (time.perf_counter() - t)
    t = time.perf_counter()
    ps = [mp.Process(target=hammer, args=(lock, None, ops)) for _ in range(2)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    timed = 2 * ops / (time.perf_counter() - t)
    print(json.dumps({'first_ms': times[0] * 1e3, 'median_ms': statistics.median(times) * 1e3,
                      'mean_ms': mean * 1e3, 'together': together, 'start_timed': timed}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--starts', type=int, default=300)
    ap.add_argument('--lock-ops', type=int, default=1_000_000)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--child', help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.child, a.starts, a.lock_ops)
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(here), here]))
    env.pop('DRAGON_MP_RUN', None)
    res = {'stdlib': [], 'dragon_mp': []}
    for r in range(a.rounds):
        order = ['stdlib', 'dragon_mp'] if r % 2 == 0 else ['dragon_mp', 'stdlib']
        for impl in order:
            out = subprocess.run([sys.executable, os.path.abspath(__file__), '--child', impl,
                                  '--starts', str(a.starts), '--lock-ops', str(a.lock_ops)],
                                 env=env, capture_output=True, text=True, timeout=600, check=True)
            res[impl].append(json.loads(out.stdout.strip().splitlines()[-1]))
    med = {impl: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for impl, rs in res.items()}
    s, d = med['stdlib'], med['dragon_mp']
    print(f'| median of {a.rounds} rounds | stdlib (fork) | dragon_mp |')
    print('|---|--:|--:|')
    print(f'| start+join: first start | {s["first_ms"]:.1f} ms | {d["first_ms"]:.1f} ms |')
    print(f'| start+join: median of {a.starts} | {s["median_ms"]:.2f} ms | {d["median_ms"]:.2f} ms |')
    print(f'| start+join: mean of the loop of {a.starts} | {s["mean_ms"]:.2f} ms | {d["mean_ms"]:.2f} ms |')
    print(f'| Lock, 2 processes x {a.lock_ops:,}, released together | {s["together"] / 1e6:.2f} M ops/s '
          f'| {d["together"] / 1e6:.2f} M ops/s |')
    print(f'| Lock, same, start+join inside the timing | {s["start_timed"] / 1e6:.2f} M ops/s '
          f'| {d["start_timed"] / 1e6:.2f} M ops/s |')


if __name__ == '__main__':
    sys.exit(main())

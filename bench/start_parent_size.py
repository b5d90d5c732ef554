"""Process start+join against the parent's size: stdlib fork and dragon_mp in one run.

    python bench/start_parent_size.py [--mib 0,32,128,512] [--starts N] [--rounds R]

stdlib fork copies the parent's page tables at every start and the child's
exit frees them again, so its start+join grows with the memory the parent
holds. dragon_mp's children are forked from the zygote, whatever the
requester holds. For each size, a fresh subprocess per implementation
allocates that many MiB (written, so resident, as a program's data is) and
times N start+joins of a no-op target; implementations alternate by round and
the table has the medians.
"""

import argparse
import statistics
import sys

MIB = 1 << 20
IMPLS = ('stdlib fork', 'dragon_mp')

# start_floor is imported where it is used, not above: a dragon_mp child re-runs this script, and
# would import a module imported here once more at every start, which a fork child does not.


def noop():
    pass


def run_one(impl, mib, starts):
    """ms per start+join in this process, holding mib MiB."""
    from start_floor import start_join
    if impl == 'dragon_mp':
        import dragon_mp as mp
    else:
        import multiprocessing
        mp = multiprocessing.get_context('fork')
    ballast = bytearray(mib * MIB)
    ballast[::4096] = b'\1' * len(range(0, len(ballast), 4096))
    try:
        return start_join(mp, starts, target=noop)
    finally:
        del ballast


def measure(impl, mib, starts):
    from start_floor import run_script
    return float(run_script(__file__, '--one', impl, mib, starts))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--mib', default='0,32,128,512', help='parent sizes, MiB (comma-separated)')
    ap.add_argument('--starts', type=int, default=200)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--one', nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        impl, mib, starts = args.one
        print(run_one(impl, int(mib), int(starts)))
        return
    sizes = [int(m) for m in args.mib.split(',')]
    times = {(impl, mib): [] for impl in IMPLS for mib in sizes}
    for r in range(args.rounds):
        for mib in sizes:
            for impl in (IMPLS if r % 2 == 0 else IMPLS[::-1]):
                times[impl, mib].append(measure(impl, mib, args.starts))
                print('  round %d  %4d MiB  %-12s %.3f ms' % (r + 1, mib, impl, times[impl, mib][-1]),
                      file=sys.stderr)
    print('| parent holds (median of %d rounds x %d starts) | stdlib fork | dragon_mp '
          '| ratio (>1: dragon_mp faster) |' % (args.rounds, args.starts))
    print('|---|--:|--:|--:|')
    for mib in sizes:
        fork, ours = (statistics.median(times[impl, mib]) for impl in IMPLS)
        print('| %d MiB | %.2f ms | %.2f ms | %.2fx |' % (mib, fork, ours, fork / ours))


if __name__ == '__main__':
    main()

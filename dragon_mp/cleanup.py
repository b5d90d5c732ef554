"""dragon-cleanup: remove what killed dragon_mp runs left behind.

A run's shared-memory segments are named dragon_mp.<runid>.*, and the run id
records its head's pid and start time, so this command can tell a dead run
from a live one without asking anyone. It only touches dragon_mp runs, never
other files of the user, and by default only dead runs.
"""

import argparse
import os
import sys

from . import reaper
from ._runtime import parse_runid, process_start_time

__all__ = ['main']


def runs():
    """Run ids that have segments in the shm directory."""
    ids = set()
    try:
        names = os.listdir(reaper.shm_dir())
    except OSError:
        return []
    for name in names:
        if name.startswith(reaper.SEGMENT_PREFIX):
            ids.add(name[len(reaper.SEGMENT_PREFIX):].split('.', 1)[0])
    return sorted(ids)


def head_alive(runid):
    parsed = parse_runid(runid)
    if parsed is None:
        return False
    pid, start = parsed
    try:
        return process_start_time(pid) == start
    except (OSError, ValueError, IndexError):
        return False


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='dragon-cleanup',
        description='Kill the processes and remove the shared memory of dragon_mp '
                    'runs whose head process is gone (or of the runs named).')
    parser.add_argument('runids', nargs='*', metavar='RUNID',
                        help='clean these runs even if their head is alive')
    parser.add_argument('-n', '--dry-run', action='store_true',
                        help='only list what would be cleaned')
    args = parser.parse_args(argv)

    targets = args.runids or [r for r in runs() if not head_alive(r)]
    if not targets:
        print('dragon-cleanup: nothing to clean')
        return 0
    for runid in targets:
        segments = reaper.run_segments(runid)
        pids = reaper.run_processes(runid)
        if args.dry_run:
            print(f'{runid}: would kill {len(pids)} process(es), remove {len(segments)} segment(s)')
            continue
        left = reaper.kill_run(runid)
        removed = reaper.unlink_segments(runid)
        print(f'{runid}: killed {len(pids) - len(left)} process(es), removed {len(removed)} segment(s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""dragon-cleanup: remove what killed dragon_mp runs left behind.

A run's shared-memory segments are named dragon_mp.<runid>.*, and the run id
records its head's pid and start time, so this command can tell a dead run
from a live one without asking anyone. It only touches dragon_mp runs, never
other files of the user, and by default only dead runs.
"""

import argparse
import os
import pwd
import sys

from . import reaper
from ._runtime import parse_runid, process_start_time

__all__ = ['main']


def runs():
    """Run ids that have segments in the shm directory."""
    return sorted(owners())


def owners():
    """{run id: uid owning its segments} for the runs with segments in the shm directory.

    On a shared machine /dev/shm holds every user's runs; a run's segments
    are created by its head's user (mode 0600), so their owner is the run's.
    """
    found = {}
    d = reaper.shm_dir()
    try:
        names = os.listdir(d)
    except OSError:
        return {}
    for name in names:
        if not name.startswith(reaper.SEGMENT_PREFIX):
            continue
        runid = name[len(reaper.SEGMENT_PREFIX):].split('.', 1)[0]
        try:
            uid = os.stat(os.path.join(d, name), follow_symlinks=False).st_uid
        except OSError:
            continue
        found.setdefault(runid, uid)
    return found


def _user(uid):
    try:
        return f'{pwd.getpwuid(uid).pw_name} (uid {uid})'
    except KeyError:
        return f'uid {uid}'


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
        description='Kill the processes and remove the shared memory of your dragon_mp '
                    'runs whose head process is gone (or of the runs named). Runs of other '
                    'users are skipped and listed; root cleans them with --all-users.')
    parser.add_argument('runids', nargs='*', metavar='RUNID',
                        help='clean these runs even if their head is alive')
    parser.add_argument('-n', '--dry-run', action='store_true',
                        help='only list what would be cleaned')
    parser.add_argument('--all-users', action='store_true',
                        help="root only: also clean other users' runs")
    args = parser.parse_args(argv)
    me = os.getuid()
    if args.all_users and me != 0:
        parser.error("--all-users: only root may clean other users' runs")

    owner = owners()
    targets = args.runids or [r for r in sorted(owner) if not head_alive(r)]
    failed = 0
    cleaned = 0
    for runid in targets:
        uid = owner.get(runid, me)
        if uid != me and not args.all_users:
            print(f'{runid}: skipped, owned by {_user(uid)}'
                  + (' (root: --all-users cleans it)' if me == 0 else ''))
            continue
        cleaned += 1
        segments = reaper.run_segments(runid)
        pids = reaper.run_processes(runid)
        if args.dry_run:
            print(f'{runid}: would kill {len(pids)} process(es), remove {len(segments)} segment(s)')
            continue
        try:
            left = reaper.kill_run(runid)
            removed = reaper.unlink_segments(runid)
        except PermissionError as e:
            failed += 1
            print(f'{runid}: not cleaned: {e}', file=sys.stderr)
            continue
        print(f'{runid}: killed {len(pids) - len(left)} process(es), removed {len(removed)} segment(s)')
    if not cleaned and not failed:
        print('dragon-cleanup: nothing to clean')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())

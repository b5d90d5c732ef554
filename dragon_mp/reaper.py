"""The reaper: cleans a run up when its head process is gone.

The head starts one reaper per run and holds the write end of a pipe whose
read end the reaper blocks on. The pipe reaches EOF when the head exits for
any reason, including SIGKILL; the reaper then kills every process still
carrying the run id in its environment and unlinks the run's shared-memory
segments. This module never loads the Go runtime: it must work when
everything else has failed, and it must stay cheap.
"""

import os
import signal
import sys
import time

__all__ = ['main']

ENV_RUN = 'DRAGON_MP_RUN'
SEGMENT_PREFIX = 'dragon_mp.'


def shm_dir():
    return os.environ.get('DRAGON_MP_SHM_DIR', '/dev/shm')


def run_segments(runid):
    prefix = f'{SEGMENT_PREFIX}{runid}.'
    try:
        names = os.listdir(shm_dir())
    except OSError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


def run_processes(runid):
    """Pids (other than ours) whose environment carries DRAGON_MP_RUN=runid."""
    needle = f'{ENV_RUN}={runid}'.encode()
    me = os.getpid()
    pids = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f'/proc/{entry}/environ', 'rb') as f:
                env = f.read()
        except OSError:
            continue
        if needle in env.split(b'\0'):
            pids.append(int(entry))
    return pids


def kill_run(runid, grace=0.5):
    """SIGTERM the run's processes, then SIGKILL those still there after grace."""
    pids = run_processes(runid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if _exists(p)]
            time.sleep(0.02)
        if not pids:
            break
    return pids


def _exists(pid):
    try:
        with open(f'/proc/{pid}/stat', 'rb') as f:
            state = f.read().rsplit(b')', 1)[1].split()[0]
        return state != b'Z'
    except OSError:
        return False


def unlink_segments(runid):
    removed = []
    for name in run_segments(runid):
        try:
            os.unlink(os.path.join(shm_dir(), name))
            removed.append(name)
        except FileNotFoundError:
            pass
    return removed


def clean_run(runid):
    kill_run(runid)
    return unlink_segments(runid)


def main():
    runid, fd = sys.argv[1], int(sys.argv[2])
    # The terminal's Ctrl-C belongs to the program, not to its janitor.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            if not os.read(fd, 4096):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    clean_run(runid)


if __name__ == '__main__':
    main()

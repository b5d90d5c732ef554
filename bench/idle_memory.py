"""Memory of an idle program: every process it has, RSS and PSS, for stdlib
fork, stdlib spawn and dragon_mp, measured in one run.

    python bench/idle_memory.py [--idle SECONDS]

Each implementation runs the same program in its own subprocess: create a
Queue and pass one object through it, start and join one Process, then stay
idle for --idle seconds (default 3: longer than the zygote keeps its spare)
and measure. Counted: the program, its descendants, and for dragon_mp the
processes of its run that are not its children (the reaper, the zygote),
plus the run's committed shared memory. RSS counts a page shared by several
processes in each of them; PSS divides it among them (their sum is what the
machine spends).
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def noop():
    pass


def _children_map():
    kids = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat', 'rb') as f:
                    ppid = int(f.read().rsplit(b')', 1)[1].split()[1])
            except OSError:
                continue
            kids.setdefault(ppid, []).append(int(entry))
    return kids


def _tree(root, kids):
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += kids.get(pid, [])
    return out


def _memory(pid):
    """(RSS kB, PSS kB) of pid."""
    got = {}
    try:
        with open(f'/proc/{pid}/smaps_rollup') as f:
            for line in f:
                key, _, value = line.partition(':')
                if key in ('Rss', 'Pss'):
                    got[key] = int(value.split()[0])
    except OSError:
        pass
    return got.get('Rss', 0), got.get('Pss', 0)


def _role(pid, me):
    if pid == me:
        return 'program'
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            cmd = f.read().replace(b'\0', b' ').decode(errors='replace')
    except OSError:
        return '?'
    for needle, role in (('resource_tracker', 'resource tracker (stdlib)'),
                         ('dragon_mp/reaper', 'reaper'),
                         ('dragon_mp.zygote', 'zygote')):
        if needle in cmd:
            return role
    return 'other'


def run_one(impl, idle):
    if impl == 'dragon_mp':
        import dragon_mp as mp
    else:
        import multiprocessing
        mp = multiprocessing.get_context(impl.split('-')[1])
    q = mp.Queue()
    q.put('x')
    q.get()
    p = mp.Process(target=noop)
    p.start()
    p.join()
    time.sleep(idle)
    me = os.getpid()
    kids = _children_map()
    pids = set(_tree(me, kids))
    shm_kb = 0
    if impl == 'dragon_mp':
        from dragon_mp import _runtime, reaper
        runid = _runtime.runid()
        for pid in reaper.run_processes(runid):
            pids |= set(_tree(pid, kids))
        for name in reaper.run_segments(runid):
            shm_kb += os.stat(os.path.join(reaper.shm_dir(), name)).st_blocks * 512 // 1024
    procs = []
    for pid in sorted(pids):
        rss, pss = _memory(pid)
        if rss:
            procs.append({'role': _role(pid, me), 'rss_kb': rss, 'pss_kb': pss})
    print(json.dumps({'impl': impl, 'procs': procs, 'shm_kb': shm_kb}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--idle', type=float, default=3.0)
    ap.add_argument('--one')
    a = ap.parse_args()
    if a.one:
        return run_one(a.one, a.idle)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, HERE, os.environ.get('PYTHONPATH', '')]))
    env.pop('DRAGON_MP_RUN', None)
    print('| implementation | processes (RSS / PSS, MB) | RSS total | PSS total |')
    print('|---|---|--:|--:|')
    for impl in ('stdlib-fork', 'stdlib-spawn', 'dragon_mp'):
        # -m so that children find noop in __mp_main__ by this module's name
        out = subprocess.run([sys.executable, '-m', 'idle_memory', '--one', impl, '--idle', str(a.idle)],
                             cwd=HERE, env=env, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            sys.exit(f'{impl} failed:\n{out.stderr[-2000:]}')
        r = json.loads(out.stdout.strip().splitlines()[-1])
        parts = ['%s %.1f / %.1f' % (p['role'], p['rss_kb'] / 1024, p['pss_kb'] / 1024) for p in r['procs']]
        if r['shm_kb']:
            parts.append('shared memory %.1f' % (r['shm_kb'] / 1024))
        rss = sum(p['rss_kb'] for p in r['procs']) + r['shm_kb']
        pss = sum(p['pss_kb'] for p in r['procs']) + r['shm_kb']
        print('| %s | %s | %.1f MB | %.1f MB |' % (impl, '; '.join(parts), rss / 1024, pss / 1024))


if __name__ == '__main__':
    main()

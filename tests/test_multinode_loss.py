"""Waiting on a lost node's objects never hangs (issue: "A blocked get on a
lost node's queue can hang forever").

Node 3 makes one object of every kind and hands them to the head. Waiters
of every kind, in threads of the head (node 0) and in processes on nodes 1
and 2, block on them; then node 3 is cut off the network. Every waiter must
raise ConnectionError naming node 3 within the time the mesh needs to notice
(about 3 s; allowed here: LIMIT), those that start while the loss is being
noticed too, and those that start after it at once (AT_ONCE).

The race is made to happen, not hoped for: waiters are registered just
before the cut (they report that they are about to block, and the cut waits
for all of them and half a second more), during it (started right after the
cut) and after it (started once the first waiter has failed). The whole
thing runs ROUNDS times (each a fresh run: the launcher ends a run whose
node is lost) while two CPU hogs load the machine.
"""

import os
import re
import subprocess
import textwrap
import time

import pytest

from conftest import cpu_hogs, wait_until
from multinode import (PRELUDE, ROOT, cluster_fixture, dragon_argv, no_leaks_fixture,
                       run_processes, write_prog, _env)

net = cluster_fixture(4, 'dml')
no_leaks = no_leaks_fixture()

ROUNDS = int(os.environ.get('LOSS_ROUNDS', 50))     # a test knob, not a product setting
LIMIT = 8.0         # s from the cut: detection (~3 s) under load, with room
AT_ONCE = 1.0       # s: an operation started after the loss was noticed

PROG = textwrap.dedent(PRELUDE) + r'''
import queue, threading, traceback
from dragon_mp.managers import SyncManager

KINDS = ['queue.get', 'simplequeue.get', 'joinablequeue.get', 'queue.put_full', 'pipe.recv',
         'lock.acquire', 'rlock.acquire', 'semaphore.acquire', 'condition.wait', 'event.wait',
         'barrier.wait', 'manager.queue.get', 'manager.dict.get']
# Value/Array pass to processes only at their start (as in stdlib): the owner
# starts the processes that use them, on nodes 0, 1 and 2.
CTYPES_KINDS = ['value.read', 'array.write']


def owner(back, results, ready):
    objs = {
        'queue': mp.Queue(), 'simplequeue': mp.SimpleQueue(), 'joinablequeue': mp.JoinableQueue(),
        'full': mp.Queue(maxsize=1), 'pipe': mp.Pipe(), 'lock': mp.Lock(), 'rlock': mp.RLock(),
        'semaphore': mp.Semaphore(0), 'condition': mp.Condition(), 'event': mp.Event(),
        'barrier': mp.Barrier(1000),
    }
    shared = {'value': mp.Value('i', 0), 'array': mp.Array('d', 4)}
    for n in (0, 1, 2):
        mp.Process(target=waiters_in_process, args=(CTYPES_KINDS, shared, results, ready, f'ctypes-n{n}'),
                   policy=Policy(node=n), daemon=True).start()
    objs['full'].put('x')
    objs['lock'].acquire()
    objs['rlock'].acquire()
    manager = SyncManager()
    manager.start()
    objs['mq'], objs['md'] = manager.Queue(), manager.dict()
    back.put(objs)
    time.sleep(600)


def wait_on(kind, o):
    """Block (or act) on the lost node's object of this kind."""
    if kind == 'queue.get':
        o['queue'].get()
    elif kind == 'simplequeue.get':
        o['simplequeue'].get()
    elif kind == 'joinablequeue.get':
        o['joinablequeue'].get()
    elif kind == 'queue.put_full':
        o['full'].put('y')
    elif kind == 'pipe.recv':
        o['pipe'][0].recv()
    elif kind == 'lock.acquire':
        o['lock'].acquire()
    elif kind == 'rlock.acquire':
        o['rlock'].acquire()
    elif kind == 'semaphore.acquire':
        o['semaphore'].acquire()
    elif kind == 'condition.wait':
        with o['condition']:
            o['condition'].wait()
    elif kind == 'event.wait':
        o['event'].wait()
    elif kind == 'barrier.wait':
        o['barrier'].wait()
    elif kind == 'value.read':
        while True:
            o['value'].value
            time.sleep(0.01)
    elif kind == 'array.write':
        while True:
            o['array'][1] = 1.0
            time.sleep(0.01)
    elif kind == 'manager.queue.get':
        o['mq'].get()
    elif kind == 'manager.dict.get':
        while True:
            o['md'].get('k')
            time.sleep(0.01)


def waiter(name, kind, o, results, ready):
    ready.put(name)
    t0 = time.time()
    try:
        wait_on(kind, o)
        results.put((name, kind, 'returned', '', t0, time.time()))
    except BaseException as e:
        results.put((name, kind, type(e).__name__, str(e)[:300], t0, time.time()))


def waiters_in_process(kinds, o, results, ready, tag):
    ts = [threading.Thread(target=waiter, args=(f'{tag}:{k}', k, o, results, ready), daemon=True)
          for k in kinds]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def start_threads(tag, o, results, ready):
    for k in KINDS:
        threading.Thread(target=waiter, args=(f'{tag}:{k}', k, o, results, ready), daemon=True).start()


if __name__ == '__main__':
    back, results, ready = mp.Queue(), mp.Queue(), mp.Queue()
    own = mp.Process(target=owner, args=(back, results, ready), policy=Policy(node=3))  # starts the manager
    own.start()
    o = back.get(timeout=60)
    procs = [mp.Process(target=waiters_in_process, args=(KINDS, o, results, ready, f'n{n}'),
                        policy=Policy(node=n), daemon=True) for n in (1, 2)]
    for p in procs:
        p.start()
    start_threads('before', o, results, ready)
    for _ in range(3 * len(KINDS) + 3 * len(CTYPES_KINDS)):
        ready.get(timeout=60)
    time.sleep(0.5)                       # they are blocked now
    cut_at = time.time()
    print('CUT', cut_at, flush=True)
    for delay in (0.3, 1.0, 2.0):       # during: the loss is not noticed yet
        time.sleep(max(0.0, cut_at + delay - time.time()))
        start_threads(f'during{delay}', o, results, ready)
    expected = 6 * len(KINDS) + 3 * len(CTYPES_KINDS) + len(KINDS)

    def report(r):
        name, kind, exc, msg, t0, t1 = r
        print('RESULT', repr((name, kind, exc, msg, t0 - cut_at, t1 - cut_at)), flush=True)
    report(results.get(timeout=120))      # the first failure: the loss is noticed
    print('NOTICED', time.time() - cut_at, flush=True)
    start_threads('after', o, results, ready)
    count = 1
    while count < expected:
        try:
            report(results.get(timeout=60))
            count += 1
        except queue.Empty:
            break
    print('COUNT', count, expected, flush=True)
'''


def test_every_waiter_on_a_lost_node_fails_in_time(net):
    prog = write_prog(net, 'loss.py', PROG)
    failures = []
    with cpu_hogs(2, 0.6):
        for rnd in range(ROUNDS):
            problems = one_round(net, prog)
            if problems:
                failures.append((rnd, problems))
                print(f'round {rnd}: {problems}')
    assert not failures, f'{len(failures)} of {ROUNDS} rounds failed: {failures[:3]}'


def one_round(net, prog):
    p = net.popen(0, dragon_argv(net, prog), cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE, text=True)
    cut_done = None
    try:
        first = p.stdout.readline()
        assert first.startswith('RUN='), (first, p.stderr.read() if p.poll() is not None else '')
        run = first.strip().split('=', 1)[1]
        net.runs.append(run)
        line = p.stdout.readline()
        assert line.startswith('CUT'), (line, p.stderr.read() if p.poll() is not None else '')
        net.cut(3)
        cut_done = time.monotonic()
        out, err = p.communicate(timeout=120)
        ended = time.monotonic() - cut_done
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
        net.heal(3)
    problems = []
    results = [eval(line[7:]) for line in out.splitlines() if line.startswith('RESULT ')]
    count = re.search(r'COUNT (\d+) (\d+)', out)
    if not count or count[1] != count[2]:
        seen = {r[0] for r in results}
        problems.append(f'missing results: {count and count.groups()}, {len(seen)} seen '
                        f'(stderr: {err[-500:]})')
    for name, kind, exc, msg, t0, t1 in results:
        limit = AT_ONCE if name.startswith('after') else LIMIT
        waited = t1 - max(t0, 0)
        if exc != 'ConnectionError' or 'node 3' not in msg:
            problems.append(f'{name}: {exc}: {msg}')
        elif (t1 > LIMIT) if not name.startswith('after') else (waited > limit):
            problems.append(f'{name}: took {t1:.1f} s after the cut (started at {t0:.1f})')
    if 'node 3 (n3) lost' not in err:
        problems.append(f'the launcher did not report node 3: {err[-300:]}')
    if ended > 12.5:
        problems.append(f'the launcher exited {ended:.1f} s after the cut')
    # The cut node notices the head is gone and ends its part by itself.
    if not wait_until(lambda: not run_processes(run), 30):
        problems.append(f'left behind: {run_processes(run)}')
    return problems

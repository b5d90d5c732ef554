"""Process lifecycle: start, join, exit codes, signals, sentinels."""

import os
import select
import signal
import sys
import time

import pytest

import dragon_mp as mp


def exit_with(code):
    sys.exit(code)


def raise_error():
    raise ValueError('boom')


def sleep_for(seconds):
    time.sleep(seconds)


def report(q):
    p = mp.current_process()
    parent = mp.parent_process()
    q.put((p.name, os.getpid(), parent.pid if parent else None, p.daemon))


class Counter(mp.Process):
    def __init__(self, q):
        super().__init__()
        self.q = q

    def run(self):
        self.q.put('ran in subclass')


@pytest.mark.parametrize('target,args,code', [
    (exit_with, (0,), 0),
    (exit_with, (3,), 3),
    (raise_error, (), 1),
    (sleep_for, (0,), 0),
])
def test_exit_codes(target, args, code):
    p = mp.Process(target=target, args=args)
    p.start()
    p.join(30)
    assert p.exitcode == code
    assert not p.is_alive()


def test_child_sees_its_identity():
    q = mp.Queue()
    p = mp.Process(target=report, args=(q,), name='worker-x', daemon=True)
    p.start()
    name, pid, parent_pid, daemon = q.get(timeout=30)
    p.join(30)
    assert (name, pid, parent_pid, daemon) == ('worker-x', p.pid, os.getpid(), True)


@pytest.mark.parametrize('method,code', [('terminate', -signal.SIGTERM), ('kill', -signal.SIGKILL)])
def test_terminate_and_kill(method, code):
    p = mp.Process(target=sleep_for, args=(60,))
    p.start()
    assert p.is_alive()
    assert p in mp.active_children()
    getattr(p, method)()
    p.join(10)
    assert p.exitcode == code
    assert p not in mp.active_children()


def test_join_timeout_then_sentinel():
    p = mp.Process(target=sleep_for, args=(0.5,))
    p.start()
    start = time.monotonic()
    p.join(0.1)
    assert p.exitcode is None and time.monotonic() - start < 0.4
    ready, _, _ = select.select([p.sentinel], [], [], 10)
    assert ready == [p.sentinel]
    p.join()
    assert p.exitcode == 0


def test_subclass_run():
    q = mp.Queue()
    p = Counter(q)
    p.start()
    assert q.get(timeout=30) == 'ran in subclass'
    p.join(30)
    assert p.exitcode == 0


def test_start_twice_and_close():
    p = mp.Process(target=exit_with, args=(0,))
    p.start()
    with pytest.raises(AssertionError):
        p.start()
    p.join(30)
    p.close()
    with pytest.raises(ValueError):
        p.is_alive()


def test_cpu_count_is_affinity():
    assert mp.cpu_count() == len(os.sched_getaffinity(0))

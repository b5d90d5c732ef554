"""An idle process costs almost nothing: a child blocked in Pipe.recv() or
Queue.get() for seconds does not keep Go's scheduler awake.

Each call into Go wakes Go's sysmon thread, which then polls every 20 us
for a while; a receiver that waited in Go, or looked through Go between
its 100 ms slices, cost ~600 thread wake-ups a second, and a few hundred
idle children took a whole 2-CPU machine (issue 17). The wait now sleeps
on the channel's futex word in C once a slice has passed idle, and a Pipe
looks at its peer once a second. Counted here: the voluntary context
switches of all the child's threads over 3 s of idling (before: ~1,800).
"""

import os
import time

import pytest

import dragon_mp as mp


def switches(pid):
    total = 0
    for tid in os.listdir(f'/proc/{pid}/task'):
        try:
            with open(f'/proc/{pid}/task/{tid}/status') as f:
                for line in f:
                    if line.startswith('voluntary_ctxt_switches'):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def wait_on_pipe(r):
    return r.recv()


def wait_on_queue(q):
    return q.get()


@pytest.mark.parametrize('kind', ['pipe', 'queue'])
def test_an_idle_receiver_sleeps(kind):
    if kind == 'pipe':
        r, w = mp.Pipe(duplex=False)
        p = mp.Process(target=wait_on_pipe, args=(r,))
    else:
        q = mp.Queue()
        p = mp.Process(target=wait_on_queue, args=(q,))
    p.start()
    try:
        time.sleep(2.0)                  # past the first slices and the first looks
        before = switches(p.pid)
        time.sleep(3.0)
        woke = switches(p.pid) - before
        assert woke < 600, f'{woke} thread wake-ups in 3 s of waiting'
    finally:
        if kind == 'pipe':
            w.send(None)
        else:
            q.put(None)
        p.join(30)
    assert p.exitcode == 0


def test_a_message_after_a_long_wait_arrives_at_once():
    # The C wait wakes on the put: the message is not held until a slice ends.
    q, back = mp.Queue(), mp.Queue()
    p = mp.Process(target=_echo_time, args=(q, back))
    p.start()
    time.sleep(1.5)                      # the child waits in C by now
    q.put(time.monotonic())
    sent, got = back.get(timeout=30)
    p.join(30)
    assert got - sent < 0.05, got - sent


def _echo_time(q, back):
    sent = q.get()
    back.put((sent, time.monotonic()))

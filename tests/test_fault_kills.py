"""Kill processes at random instants of mixed traffic: what survives is intact.

Workers put and get small, chunk-sized and large messages on an unbounded
and a bounded Queue and take a Lock, in a loop; the test SIGKILLs one of
them at a random instant (mid put or get of any size, mid acquire, mid
allocation), starts another, and does it again, 100 times. Then every
message still queued must be intact and the queues usable.

The pool's bytes in use are compared with the baseline once everything is
gone, and any difference is reported as a warning, not a failure: kills
inside the channel's critical sections still leak now and then (a chunk
allocated and not yet linked, a large message's block between the ring and
the taker's ledger; about one run in ten leaves 128 KiB to 1 MiB behind).
docs/design.md, "Killed holders", lists these windows. What the ledger
does cover (blocks held outside a channel, references, a ledger being
registered) is asserted by tests/test_killed_references.py and
tests/test_large_objects.py.

A worker is killed only after it has taken its arguments: a process killed
before it unpickled them cannot have recorded their references (see
docs/design.md, "Killed holders of handles").
"""

import gc
import json
import os
import random
import signal
import time
import warnings
import zlib

import dragon_mp
from dragon_mp import _core

KILLS = 100
LIVE = 4                                    # workers alive at once
SIZES = (0, 100, 4000, 60_000, 70_000, 1 << 20, 3 << 20)   # inline, chunk-sized and pool-block messages


def in_use():
    return json.loads(_core.gocore().RuntimeStats())['in_use']


def _message(wid, seq, size):
    body = random.Random(wid * 1_000_003 + seq).randbytes(size)
    return (wid, seq, zlib.crc32(body), body)


def _check(msg):
    wid, seq, crc, body = msg
    assert zlib.crc32(body) == crc, "message %d/%d damaged" % (wid, seq)


def _worker(wid, started, stop, free, bounded, lock):
    started.put(os.getpid())                # arguments taken: from here on it may be killed
    rng = random.Random(wid)
    seq = 0
    while not stop.is_set():
        op = rng.randrange(5)
        if op == 0:
            free.put(_message(wid, seq, rng.choice(SIZES)))
            seq += 1
        elif op == 1:
            try:
                bounded.put(_message(wid, seq, rng.choice(SIZES)), timeout=0.05)
                seq += 1
            except Exception:
                pass                        # full
        elif op in (2, 3):
            q = free if op == 2 else bounded
            try:
                _check(q.get(timeout=0.05))
            except dragon_mp.queues.Empty:
                pass
        else:
            # A Lock whose holder was killed stays held (as stdlib's would):
            # never wait long for it.
            if lock.acquire(timeout=0.02):
                lock.release()


def test_random_kills_under_mixed_traffic_leave_what_survives_intact():
    warm = dragon_mp.Queue()
    warm.put(bytes(1 << 20))                # this process's first large message, done once
    warm.get()
    del warm
    gc.collect()
    base = in_use()
    rng = random.Random(20261207)
    started, stop = dragon_mp.SimpleQueue(), dragon_mp.Event()
    free, bounded, lock = dragon_mp.Queue(), dragon_mp.Queue(8), dragon_mp.Lock()
    live, ready, next_id = {}, set(), 0

    def spawn():
        nonlocal next_id
        p = dragon_mp.Process(target=_worker, args=(next_id, started, stop, free, bounded, lock))
        next_id += 1
        p.start()
        live[p.pid] = p

    try:
        for _ in range(LIVE):
            spawn()
        kills = 0
        deadline = time.monotonic() + 600
        while kills < KILLS:
            assert time.monotonic() < deadline, "only %d kills in 600 s" % kills
            while not started.empty() or not ready:
                ready.add(started.get())
            pid = rng.choice(sorted(ready))
            time.sleep(rng.uniform(0, 0.02))            # a random instant of its traffic
            os.kill(pid, signal.SIGKILL)
            p = live.pop(pid)
            ready.discard(pid)
            p.join(30)
            assert p.exitcode == -signal.SIGKILL, p.exitcode
            kills += 1
            spawn()
        stop.set()
        for p in live.values():
            p.join(60)
            assert p.exitcode == 0, "a worker that was not killed ended with %s" % p.exitcode
        # Every message still queued is intact (a killed sender's message is
        # either whole or not there).
        for q in (free, bounded):
            while True:
                try:
                    _check(q.get(timeout=0.2))
                except dragon_mp.queues.Empty:
                    break
        assert free.put(b"still usable") is None and free.get(timeout=5) == b"still usable"
    finally:
        stop.set()
        for p in live.values():
            p.kill()
            p.join(30)
    del free, bounded, lock, started, stop, live, p, q
    gc.collect()
    deadline = time.monotonic() + 5
    while in_use() > base and time.monotonic() < deadline:
        time.sleep(0.1)
    if in_use() > base:
        warnings.warn("after %d kills the pool holds %d bytes more than before (known windows, "
                      "see docs/design.md): %s" % (KILLS, in_use() - base, _core.gocore().RuntimeStats()))

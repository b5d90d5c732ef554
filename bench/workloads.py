"""Benchmark workloads for bench/run.py.

Every workload is a function ``workload(mp, p)`` where ``mp`` is a
multiprocessing-like object (the stdlib module's context, or the ``dragon_mp``
module) and ``p`` the parameter dict of this run (quick or full, see
WORKLOADS).  The code is literally identical for every implementation.

Sampling: a warm-up batch, then a second batch that calibrates how many
operations make one sample last about ``p["sample_time"]`` seconds (bounded
by n_min/n_max), then ``p["reps"]`` samples.  A workload returns a list of
metrics (see ``metric``) with all samples; run.py reports the median.

Everything a child process runs is a module-level function of this module, so
children started as fresh interpreters (spawn, dragon_mp) can import it:
run.py puts bench/ on PYTHONPATH for the whole process tree.

No side effects at import time (children import this module).
"""

import os
import time

perf = time.perf_counter

KIB = 1024
MIB = 1024 * 1024
JOIN_TIMEOUT = 10.0  # seconds allowed for a child to exit once told to stop


class Unsupported(Exception):
    """The module lacks a feature the workload needs (reported as n/a)."""


def need(mp, *names):
    missing = [n for n in names if not hasattr(mp, n)]
    if missing:
        raise Unsupported("module has no " + ", ".join(missing))


def metric(key, label, unit, better, samples, ref=False, **extra):
    """better: 'lower' (times) or 'higher' (rates).  ref: a reference value
    measured in-process (same code for every implementation), not compared."""
    d = dict(key=key, label=label, unit=unit, better=better,
             samples=[float(s) for s in samples], ref=ref)
    d.update(extra)
    return d


def measure(body, p, warm=None):
    """body(k) performs k operations.  Returns (seconds per operation for each
    of p['reps'] samples, operations per sample)."""
    warm = warm or p["warm"]
    body(warm)                       # warm-up
    t0 = perf()
    body(warm)                       # calibration
    per_op = max((perf() - t0) / warm, 1e-9)
    n = int(p["sample_time"] / per_op)
    n = max(p.get("n_min", 1), min(p.get("n_max", 10 ** 9), n))
    samples = []
    for _ in range(p["reps"]):
        t0 = perf()
        body(n)
        samples.append((perf() - t0) / n)
    return samples, n


def _stop(procs):
    """Join child processes; terminate those that do not exit in time.
    Raises if one had to be terminated or exited with a non-zero code."""
    bad = []
    for pr in procs:
        pr.join(JOIN_TIMEOUT)
        if pr.is_alive():
            pr.terminate()
            pr.join(JOIN_TIMEOUT)
            bad.append("child did not exit when told, terminated")
        elif pr.exitcode != 0:
            bad.append("child exitcode %s" % pr.exitcode)
    if bad:
        raise RuntimeError("; ".join(bad))


def _kill_quietly(procs):
    for pr in procs:
        try:
            if pr.is_alive():
                pr.terminate()
            pr.join(JOIN_TIMEOUT)
        except Exception:
            pass


# ---------------------------------------------------------------------------
# child-side functions (module level: importable by fresh interpreters)
# ---------------------------------------------------------------------------

def child_noop():
    pass


def child_square(x):
    return x * x


def child_echo_queue(q_in, q_out):
    """Send back every message until None."""
    get, put = q_in.get, q_out.put
    while True:
        m = get()
        if m is None:
            break
        put(m)


def child_echo_pipe(conn):
    """Send back every message until an empty one."""
    recv, send = conn.recv_bytes, conn.send_bytes
    while True:
        m = recv()
        if not m:
            break
        send(m)
    conn.close()


def child_producer(ctl, out):
    """For every (n, size) command on ctl, put n bytes objects of that size on
    out; stop on None.  The payload is made once per size (not timed)."""
    payloads = {}
    put = out.put
    while True:
        cmd = ctl.get()
        if cmd is None:
            break
        n, size = cmd
        b = payloads.get(size)
        if b is None:
            b = payloads[size] = os.urandom(size)
        for _ in range(n):
            put(b)


def child_lock_hammer(lock, back, go):
    """For every (start_at, duration) on go: wait until start_at (shared
    monotonic clock), acquire+release lock in batches until start_at+duration,
    report ("done", operations, t_start, t_end).  Stop on None."""
    acq, rel = lock.acquire, lock.release
    back.put(("ready", os.getpid()))
    while True:
        cmd = go.get()
        if cmd is None:
            break
        start_at, duration = cmd
        while perf() < start_at:
            pass
        t0 = perf()
        end = t0 + duration
        ops = 0
        t1 = t0
        while t1 < end:
            for _ in range(64):
                acq()
                rel()
            ops += 64
            t1 = perf()
        back.put(("done", ops, t0, t1))


# ---------------------------------------------------------------------------
# workloads (parent side)
# ---------------------------------------------------------------------------

def queue_pingpong(mp, p):
    need(mp, "Queue", "Process")
    q_in, q_out = mp.Queue(), mp.Queue()
    child = mp.Process(target=child_echo_queue, args=(q_in, q_out))
    child.start()
    try:
        msg = os.urandom(64)
        put, get = q_in.put, q_out.get

        def body(k):
            for _ in range(k):
                put(msg)
                r = get()
            if r != msg:
                raise AssertionError("echo mismatch")

        samples, n = measure(body, p)
        put(None)
        _stop([child])
    except BaseException:
        _kill_quietly([child])
        raise
    return [metric("queue_pingpong", "Queue ping-pong 64 B (parent<->child, 2 Queues)",
                   "µs/rt", "lower", [s * 1e6 for s in samples], n=n)]


def pipe_pingpong(mp, p):
    need(mp, "Pipe", "Process")
    a, b = mp.Pipe()
    child = mp.Process(target=child_echo_pipe, args=(b,))
    child.start()
    try:
        msg = os.urandom(64)
        send, recv = a.send_bytes, a.recv_bytes

        def body(k):
            for _ in range(k):
                send(msg)
                r = recv()
            if r != msg:
                raise AssertionError("echo mismatch")

        samples, n = measure(body, p)
        send(b"")
        _stop([child])
    except BaseException:
        _kill_quietly([child])
        raise
    finally:
        a.close()
        b.close()
    return [metric("pipe_pingpong", "Pipe ping-pong 64 B (send_bytes/recv_bytes)",
                   "µs/rt", "lower", [s * 1e6 for s in samples], n=n)]


def _streamer(ctl, out, size):
    """body(k): ask the producer child for k messages of size, receive them.
    Timed from the request to the last message (includes one wake-up)."""
    get = out.get

    def body(k):
        ctl.put((k, size))
        for _ in range(k):
            b = get()
        if len(b) != size:
            raise AssertionError("got %d bytes, expected %d" % (len(b), size))
    return body


def queue_throughput(mp, p):
    need(mp, "Queue", "Process")
    ctl, out = mp.Queue(), mp.Queue()
    child = mp.Process(target=child_producer, args=(ctl, out))
    child.start()
    try:
        samples, n = measure(_streamer(ctl, out, 64), p)
        ctl.put(None)
        _stop([child])
    except BaseException:
        _kill_quietly([child])
        raise
    return [metric("queue_throughput", "Queue one-way throughput 64 B (child->parent)",
                   "msgs/s", "higher", [1 / s for s in samples], n=n)]


def memcpy_bandwidth(size, p):
    """In-process copy bandwidth (MB/s) into a preallocated, already touched
    buffer via memoryview slice assignment (one memcpy)."""
    src = os.urandom(size)
    dst = bytearray(size)
    mv = memoryview(dst)

    def body(k):
        for _ in range(k):
            mv[:] = src

    # stable: shorter samples than the workloads'
    samples, n = measure(body, dict(p, n_min=1, n_max=1 << 20, sample_time=p["sample_time"] / 4),
                         warm=4)
    mv.release()
    return [size / s / 1e6 for s in samples], n


def _size_name(size):
    return "%d MiB" % (size // MIB) if size >= MIB else "%d KiB" % (size // KIB)


def queue_bandwidth(mp, p):
    need(mp, "Queue", "Process")
    ctl, out = mp.Queue(), mp.Queue()
    child = mp.Process(target=child_producer, args=(ctl, out))
    child.start()
    metrics = []
    try:
        for size, warm in p["sizes"]:
            samples, n = measure(_streamer(ctl, out, size), p, warm=warm)
            name = _size_name(size)
            metrics.append(metric("queue_bw_" + name.replace(" ", ""),
                                  "Queue bandwidth %s bytes (child->parent)" % name,
                                  "MB/s", "higher", [size / s / 1e6 for s in samples],
                                  n=n, size=size))
        ctl.put(None)
        _stop([child])
    except BaseException:
        _kill_quietly([child])
        raise
    # reference, measured after the child is gone: in-process memcpy
    for size, _warm in p["sizes"]:
        name = _size_name(size)
        samples, n = memcpy_bandwidth(size, p)
        metrics.append(metric("memcpy_" + name.replace(" ", ""),
                              "memcpy %s (in-process reference)" % name, "MB/s", "higher",
                              samples, ref=True, n=n, size=size))
    return metrics


def pool_map(mp, p):
    need(mp, "Pool")
    pool = mp.Pool(p["procs"])
    try:
        items = list(range(p["items"]))

        def body(k):  # k maps of all items
            for _ in range(k):
                r = pool.map(child_square, items)
            if len(r) != len(items) or r[-1] != items[-1] ** 2:
                raise AssertionError("wrong map result")

        samples, n = measure(body, p)
        pool.close()
        pool.join()
    except BaseException:
        pool.terminate()
        pool.join()
        raise
    return [metric("pool_map", "Pool(%d).map trivial fn over %d ints" % (p["procs"], len(items)),
                   "tasks/s", "higher", [len(items) / s for s in samples], n=n)]


def pool_apply_async(mp, p):
    need(mp, "Pool")
    pool = mp.Pool(p["procs"])
    try:
        def body(k):  # k tasks submitted, then all results collected
            rs = [pool.apply_async(child_square, (i,)) for i in range(k)]
            for i, r in enumerate(rs):
                if r.get() != i * i:
                    raise AssertionError("wrong apply_async result")

        samples, n = measure(body, p)
        pool.close()
        pool.join()
    except BaseException:
        pool.terminate()
        pool.join()
        raise
    return [metric("pool_apply_async",
                   "Pool(%d).apply_async trivial fn (submit batch, then get)" % p["procs"],
                   "tasks/s", "higher", [1 / s for s in samples], n=n)]


def process_start(mp, p):
    need(mp, "Process")

    def body(k):
        for _ in range(k):
            pr = mp.Process(target=child_noop)
            pr.start()
            pr.join()
            if pr.exitcode != 0:
                raise RuntimeError("child exitcode %s" % pr.exitcode)

    samples, n = measure(body, p)
    return [metric("process_start", "Process start+join, trivial target",
                   "ms/proc", "lower", [s * 1e3 for s in samples], n=n)]


def process_start_big_parent(mp, p):
    """process_start from a parent that holds p["parent_mib"] MiB: fork copies what the parent maps."""
    need(mp, "Process")
    ballast = bytearray(p["parent_mib"] * MIB)
    ballast[::4096] = b"\1" * len(range(0, len(ballast), 4096))    # resident, as a program's data is
    try:
        rows = process_start(mp, p)
    finally:
        del ballast
    rows[0]["key"] = "process_start_big_parent"
    rows[0]["label"] = "Process start+join, parent holding %d MiB" % p["parent_mib"]
    return rows


def _pairs(p, obj, a_name, b_name):
    """Seconds per (a(); b()) pair on one object, uncontended."""
    a, b = getattr(obj, a_name), getattr(obj, b_name)

    def body(k):
        for _ in range(k):
            a()
            b()
    return measure(body, p)


def lock(mp, p):
    need(mp, "Lock")
    samples, n = _pairs(p, mp.Lock(), "acquire", "release")
    return [metric("lock", "Lock acquire+release, uncontended", "ns/op", "lower",
                   [s * 1e9 for s in samples], n=n)]


def lock_contended(mp, p):
    need(mp, "Lock", "Queue", "Process")
    lk = mp.Lock()
    back, go = mp.Queue(), mp.Queue()
    nprocs = p["procs"]
    procs = [mp.Process(target=child_lock_hammer, args=(lk, back, go)) for _ in range(nprocs)]
    samples, overlaps = [], []
    try:
        for pr in procs:
            pr.start()
        for _ in procs:
            if back.get()[0] != "ready":
                raise AssertionError("protocol error")
        for rep in range(p["reps"] + 1):  # rep 0 is the warm-up
            dur = p["sample_time"] if rep else p["sample_time"] / 2
            start_at = perf() + 0.02  # workers spin until then: all start together
            for _ in procs:
                go.put((start_at, dur))
            spans = [back.get()[1:] for _ in procs]
            if rep:
                samples.append(sum(ops / (t1 - t0) for ops, t0, t1 in spans))
                lo = max(t0 for _, t0, _ in spans)
                hi = min(t1 for _, _, t1 in spans)
                overlaps.append(max(0.0, hi - lo) / max(t1 - t0 for _, t0, t1 in spans))
        for _ in procs:
            go.put(None)
        _stop(procs)
    except BaseException:
        _kill_quietly(procs)
        raise
    return [metric("lock_contended",
                   "Lock acquire+release, %d processes contending (total)" % nprocs,
                   "ops/s", "higher", samples, overlap=min(overlaps))]


def event(mp, p):
    need(mp, "Event")
    samples, n = _pairs(p, mp.Event(), "set", "clear")
    return [metric("event", "Event set+clear, uncontended", "ns/op", "lower",
                   [s * 1e9 for s in samples], n=n)]


def semaphore(mp, p):
    need(mp, "Semaphore")
    samples, n = _pairs(p, mp.Semaphore(1), "acquire", "release")
    return [metric("semaphore", "Semaphore acquire+release, uncontended", "ns/op", "lower",
                   [s * 1e9 for s in samples], n=n)]


# ---------------------------------------------------------------------------
# registry: name -> (function, quick params, full params)
# warm: operations of the warm-up batch (and of the calibration batch)
# sample_time: target seconds per sample; n_min/n_max bound operations/sample
# ---------------------------------------------------------------------------

NCPU = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
QUICK = dict(reps=3, sample_time=0.04)
FULL = dict(reps=7, sample_time=0.15)


def _params(quick, full):
    return dict(QUICK, **quick), dict(FULL, **full)


WORKLOADS = {
    "queue_pingpong": (queue_pingpong,) + _params(
        dict(warm=300, n_min=100), dict(warm=2000, n_min=500)),
    "queue_throughput": (queue_throughput,) + _params(
        dict(warm=2000, n_min=1000), dict(warm=10000, n_min=5000)),
    "queue_bandwidth": (queue_bandwidth,) + _params(
        dict(sizes=[(MIB, 10), (16 * MIB, 2)], n_min=2, n_max=2000),
        dict(sizes=[(MIB, 40), (16 * MIB, 4)], n_min=4, n_max=5000)),
    "pipe_pingpong": (pipe_pingpong,) + _params(
        dict(warm=300, n_min=100), dict(warm=2000, n_min=500)),
    "pool_map": (pool_map,) + _params(
        dict(procs=NCPU, items=10000, warm=2), dict(procs=NCPU, items=10000, warm=5)),
    "pool_apply_async": (pool_apply_async,) + _params(
        dict(procs=NCPU, warm=300, n_min=100), dict(procs=NCPU, warm=2000, n_min=500)),
    "process_start": (process_start,) + _params(
        dict(warm=1, n_min=2, n_max=200, sample_time=0.08),
        dict(warm=2, n_min=3, n_max=500, sample_time=0.3)),
    "process_start_big_parent": (process_start_big_parent,) + _params(
        dict(parent_mib=256, warm=1, n_min=2, n_max=100, sample_time=0.08),
        dict(parent_mib=256, warm=2, n_min=3, n_max=300, sample_time=0.3)),
    "lock": (lock,) + _params(dict(warm=20000), dict(warm=100000)),
    "lock_contended": (lock_contended,) + _params(dict(procs=2), dict(procs=2)),
    "event": (event,) + _params(dict(warm=5000), dict(warm=20000)),
    "semaphore": (semaphore,) + _params(dict(warm=20000), dict(warm=100000)),
}

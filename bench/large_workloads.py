"""Large-payload workloads for bench/run.py (issue 15): bytes, bytearray and
numpy uint8 arrays of 64 KiB to 64 MiB through Queue, Pipe and Pool.

Same conventions as workloads.py: a workload is ``workload(mp, p)``, the same
code for every implementation; child targets are module-level functions.
Each workload covers several payload kinds and sizes.  Every kind runs with
a fresh child process; the sizes of a kind run smallest first.  A failure
(an exception, or Unsupported, e.g. numpy missing) becomes an ``n/a`` cell
with its reason for that kind's remaining sizes, the other kinds still run.
After every measured (kind, size) the metrics so far are reported through
PROGRESS (set by run.py), so a run killed by the timeout keeps its rows.

The receiver checks every object it gets: type (bytes, bytearray, or a numpy
ndarray of dtype uint8 and shape (size,)), length, and 16 bytes at the start,
middle and end against what was sent, so a wrong path cannot look fast.

Shapes follow DragonHPC's examples/multiprocessing/p2p_lat.py (Queue(maxsize=2)
round trip) and p2p_bw.py (a window of 32 messages, then one ack).

No side effects at import time (children import this module).
"""

import hashlib
import os
import re
import shutil
import subprocess
import tempfile

from workloads import (KIB, MIB, Unsupported, _kill_quietly, _size_name, _stop, child_echo_queue,
                       metric, need, perf)

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
KINDS = ("bytes", "bytearray", "numpy")
WINDOW = 32                 # messages per window (p2p_bw.py's WINDOW)
POOL_TASKS = 32
PROGRESS = None             # run.py --one sets this: called with the metrics so far
ACK = b"ack"
XCOPY_BYTES = 256 * MIB     # what each of xcopy's three patterns moves, per size

_PATTERN = bytes((i * 37 + 11) & 0xFF for i in range(251))  # period 251: not page aligned


# ---------------------------------------------------------------------------
# payloads and checks
# ---------------------------------------------------------------------------

def _numpy():
    try:
        import numpy
    except ImportError as e:
        raise Unsupported("numpy is not installed (%s)" % e)
    return numpy


def _pattern_bytes(size):
    return (_PATTERN * (size // len(_PATTERN) + 1))[:size]


def make_payload(kind, size):
    """The object a sender sends (made once per size, not timed)."""
    b = _pattern_bytes(size)
    if kind == "bytes":
        return b
    if kind == "bytearray":
        return bytearray(b)
    if kind == "numpy":
        np = _numpy()
        return np.frombuffer(b, dtype=np.uint8).copy()
    raise ValueError("unknown payload kind %r" % kind)


def expectation(size):
    """(offset, 16 bytes) samples every received payload is checked against."""
    b = _pattern_bytes(size)
    offs = sorted({0, max(0, size // 2 - 8), max(0, size - 16)})
    return [(o, b[o:o + 16]) for o in offs]


def make_checker(kind, size):
    """check(obj) raises AssertionError unless obj is the payload of that kind
    and size.  kind 'recv_bytes': what recv_bytes returns whatever was sent,
    bytes for stdlib; a bytearray is accepted too (DragonHPC returns one) and
    recorded in check.types, the set of the types seen."""
    exp = expectation(size)
    if kind == "numpy":
        ndarray = _numpy().ndarray

        def check(obj):
            if (not isinstance(obj, ndarray) or obj.dtype.name != "uint8"
                    or obj.shape != (size,)):
                raise AssertionError("got %s %s %s, expected uint8 ndarray of shape (%d,)" % (
                    type(obj).__name__, getattr(obj, "dtype", "?"), getattr(obj, "shape", "?"),
                    size))
            for o, want in exp:
                if obj[o:o + 16].tobytes() != want:
                    raise AssertionError("payload differs at offset %d" % o)
        return check
    typs = {"bytes": (bytes,), "bytearray": (bytearray,), "recv_bytes": (bytes, bytearray)}[kind]
    types = set()

    def check(obj):
        t = type(obj)
        if t not in typs or len(obj) != size:
            raise AssertionError("got %s of %s bytes, expected %s of %d" % (
                t.__name__, len(obj) if hasattr(obj, "__len__") else "?",
                " or ".join(x.__name__ for x in typs), size))
        types.add(t)
        for o, want in exp:
            if obj[o:o + 16] != want:
                raise AssertionError("payload differs at offset %d" % o)
    check.types = types
    return check


# ---------------------------------------------------------------------------
# child-side functions (module level: importable by fresh interpreters)
# ---------------------------------------------------------------------------

def child_put_stream(ctl, out, kind):
    """For every (n, size) on ctl, put n payloads of that size on out."""
    size_now, obj = None, None
    put = out.put
    while True:
        cmd = ctl.get()
        if cmd is None:
            break
        n, size = cmd
        if size != size_now:
            obj = None
            size_now, obj = size, make_payload(kind, size)
        for _ in range(n):
            put(obj)


def _send_windows(next_cmd, send, wait_ack, kind):
    """For every (k, size) from next_cmd(), until None: k times, send WINDOW
    payloads of that size, then wait for one ack (p2p_bw.py's sender)."""
    size_now, obj = None, None
    while True:
        cmd = next_cmd()
        if cmd is None:
            return
        k, size = cmd
        if size != size_now:
            obj = None
            size_now, obj = size, make_payload(kind, size)
        for _ in range(k):
            for _ in range(WINDOW):
                send(obj)
            wait_ack()


def child_queue_window(ctl, q, ack, kind):
    """Windows of payloads put on q, commands on ctl, acks on ack."""
    _send_windows(ctl.get, q.put, ack.get, kind)


def child_pipe_window(data, ctl, kind, use_bytes):
    """Windows of payloads sent on data (send_bytes, or send: pickled);
    commands and acks on ctl."""
    _send_windows(ctl.recv, data.send_bytes if use_bytes else data.send, ctl.recv, kind)
    data.close()
    ctl.close()


def task_fill(arg):
    """Pool task: a fresh payload of `size` bytes, every byte i & 0xff."""
    kind, i, size = arg
    if kind == "numpy":
        np = _numpy()
        return np.full(size, i & 0xFF, dtype=np.uint8)
    return bytes((i & 0xFF,)) * size


# ---------------------------------------------------------------------------
# driver: kinds x sizes, fresh child per kind, failures per cell
# ---------------------------------------------------------------------------

def measure_large(body, p, warm):
    """As workloads.measure, but the warm-up batch also calibrates (a 64 MiB
    window of 32 messages is 2 GiB: no separate calibration batch).  Returns
    (seconds per operation for each of p['reps'] samples, operations/sample)."""
    t0 = perf()
    body(warm)
    per_op = max((perf() - t0) / warm, 1e-9)
    n = max(p.get("n_min", 1), min(p.get("n_max", 10 ** 9), int(p["sample_time"] / per_op)))
    samples = []
    for _ in range(p["reps"]):
        t0 = perf()
        body(n)
        samples.append((perf() - t0) / n)
    return samples, n


def _size_params(p, size, warm):
    """p for one size: n_max bounds the bytes one sample puts in flight."""
    per = size * p.get("msgs_per_op", 1)
    n_max = max(p.get("n_min", 1), min(p.get("n_max", 10 ** 9), p["max_bytes"] // per))
    q = dict(p, n_max=n_max)
    if size >= p.get("big_size", 1 << 62):
        q["reps"] = p.get("big_reps", p["reps"])
    return q


def run_cells(p, kinds, key, label, unit, better, start, measure_size, value):
    """For every kind: state = start(kind) (starts the child; returns
    (state, stop)); for every (size, warm) of p['sizes']:
    samples, n[, extra] = measure_size(state, kind, size, warm) (extra: more
    fields of the metric); value(size, s) turns seconds per operation into the
    reported unit.  Returns the metrics."""
    metrics = []
    for kind in kinds:
        stop, failed = None, None
        try:
            state, stop = start(kind)
        except Unsupported as e:
            failed = "unsupported: %s" % e
        except Exception as e:
            failed = "%s: %s" % (type(e).__name__, _first_line(e))
        for size, warm in p["sizes"]:
            name = _size_name(size)
            k = "%s_%s_%s" % (key, kind, name.replace(" ", ""))
            lab = label % dict(size=name, kind=kind)
            if failed:
                metrics.append(metric(k, lab, unit, better, [], size=size, kind=kind,
                                      reason=failed))
                continue
            try:
                res = measure_size(state, kind, size, warm)
                samples, n, extra = res[0], res[1], (res[2] if len(res) > 2 else {})
            except Unsupported as e:
                failed = "unsupported: %s" % e
            except Exception as e:
                failed = "%s at %s: %s" % (type(e).__name__, name, _first_line(e))
            if failed:
                metrics.append(metric(k, lab, unit, better, [], size=size, kind=kind,
                                      reason=failed))
                failed = "not run: %s" % failed
                if stop:
                    stop(True)
                    stop = None
                continue
            metrics.append(metric(k, lab, unit, better, [value(size, s) for s in samples],
                                  n=n, size=size, kind=kind, **extra))
            if PROGRESS:
                PROGRESS(metrics)
        if stop:
            try:
                stop(False)
            except Exception as e:
                for m in metrics:
                    if m.get("kind") == kind:
                        m["note"] = "%s child at exit: %s" % (kind, _first_line(e))
    return metrics


def _first_line(e):
    s = str(e).strip().splitlines()
    return s[0][:200] if s else ""


def _child_stopper(procs, finish):
    """stop(failed): on success finish() (tell the child to end) and join,
    raising if a child misbehaves; after a failure terminate quietly."""
    def stop(failed):
        if failed:
            _kill_quietly(procs)
            return
        try:
            finish()
            _stop(procs)
        except BaseException:
            _kill_quietly(procs)
            raise
    return stop


# ---------------------------------------------------------------------------
# workloads
# ---------------------------------------------------------------------------

def big_queue_oneway(mp, p):
    """A child puts N objects on an unbounded Queue, the parent gets them."""
    need(mp, "Queue", "Process")

    def start(kind):
        make_checker(kind, 16)              # numpy missing: Unsupported before a child starts
        ctl, out = mp.Queue(), mp.Queue()
        child = mp.Process(target=child_put_stream, args=(ctl, out, kind))
        child.start()
        return (ctl, out), _child_stopper([child], lambda: ctl.put(None))

    def measure_size(state, kind, size, warm):
        ctl, out = state
        check, get = make_checker(kind, size), out.get

        def body(k):
            ctl.put((k, size))
            for _ in range(k):
                check(get())
        return measure_large(body, _size_params(p, size, warm), warm=warm)

    metrics = run_cells(p, p["kinds"], "big_queue_oneway",
                        "Queue one-way %(size)s %(kind)s (child->parent)", "MB/s", "higher",
                        start, measure_size, lambda size, s: size / s / 1e6)
    metrics += xcopy_metrics(p)
    return metrics


def big_queue_rt(mp, p):
    """Parent puts on a Queue(maxsize=2), the child gets and puts the object
    back on a second Queue(maxsize=2), the parent gets it (p2p_lat.py --queues)."""
    need(mp, "Queue", "Process")

    def start(kind):
        make_checker(kind, 16)
        q_in, q_out = mp.Queue(2), mp.Queue(2)
        child = mp.Process(target=child_echo_queue, args=(q_in, q_out))
        child.start()
        return (q_in, q_out), _child_stopper([child], lambda: q_in.put(None))

    def measure_size(state, kind, size, warm):
        q_in, q_out = state
        check, put, get = make_checker(kind, size), q_in.put, q_out.get
        obj = make_payload(kind, size)

        def body(k):
            for _ in range(k):
                put(obj)
                check(get())
        return measure_large(body, _size_params(p, size, warm), warm=warm)

    return run_cells(p, p["kinds"], "big_queue_rt",
                     "Queue(maxsize=2) round trip %(size)s %(kind)s", "µs/rt", "lower",
                     start, measure_size, lambda size, s: s * 1e6)


def big_queue_window(mp, p):
    """p2p_bw.py --queues: the child puts WINDOW objects on a Queue(maxsize=32)
    and waits for an ack on a second one; the parent gets WINDOW, acks."""
    need(mp, "Queue", "Process")

    def start(kind):
        make_checker(kind, 16)
        ctl, q, ack = mp.Queue(), mp.Queue(WINDOW), mp.Queue(WINDOW)
        child = mp.Process(target=child_queue_window, args=(ctl, q, ack, kind))
        child.start()
        return (ctl, q, ack), _child_stopper([child], lambda: ctl.put(None))

    def measure_size(state, kind, size, warm):
        ctl, q, ack = state
        check, get, put_ack = make_checker(kind, size), q.get, ack.put

        def body(k):
            ctl.put((k, size))
            for _ in range(k):
                for _ in range(WINDOW):
                    check(get())
                put_ack(ACK)
        return measure_large(body, _size_params(dict(p, msgs_per_op=WINDOW), size, warm), warm=warm)

    return run_cells(p, p["kinds"], "big_queue_window",
                     "Queue(maxsize=32) window 32 %(size)s %(kind)s", "MB/s", "higher",
                     start, measure_size, lambda size, s: size * WINDOW / s / 1e6)


def _pipe_window(mp, p, use_bytes):
    need(mp, "Pipe", "Process")

    def start(kind):
        make_checker(kind, 16)
        data_r, data_w = mp.Pipe(duplex=False)
        ctl_r, ctl_w = mp.Pipe(duplex=False)
        child = mp.Process(target=child_pipe_window, args=(data_w, ctl_r, kind, use_bytes))
        child.start()
        ends = (data_r, data_w, ctl_r, ctl_w)

        def finish():
            ctl_w.send(None)

        stop = _child_stopper([child], finish)

        def stop_and_close(failed):
            try:
                stop(failed)
            finally:
                for c in ends:
                    c.close()
        return (data_r, ctl_w), stop_and_close

    def measure_size(state, kind, size, warm):
        data_r, ctl_w = state
        check = make_checker("recv_bytes" if use_bytes else kind, size)
        recv = data_r.recv_bytes if use_bytes else data_r.recv
        send = ctl_w.send

        def body(k):
            send((k, size))
            for _ in range(k):
                for _ in range(WINDOW):
                    check(recv())
                send(ACK)
        samples, n = measure_large(body, _size_params(dict(p, msgs_per_op=WINDOW), size, warm),
                             warm=warm)
        odd = sorted(t.__name__ for t in check.types if t is not bytes) if use_bytes else []
        return samples, n, ({"note": "recv_bytes returned %s, not bytes" % "/".join(odd)}
                            if odd else {})

    how = "send_bytes" if use_bytes else "send/recv"
    return run_cells(p, p["kinds"], "big_pipe_%s" % ("bytes" if use_bytes else "obj"),
                     "Pipe %s window 32 %%(size)s %%(kind)s" % how, "MB/s", "higher",
                     start, measure_size, lambda size, s: size * WINDOW / s / 1e6)


def big_pipe_bytes(mp, p):
    """p2p_bw.py --with_bytes: the child send_bytes() WINDOW objects (any
    buffer: bytes, bytearray, ndarray), waits for an ack; the parent
    recv_bytes() them (always bytes) and acks."""
    return _pipe_window(mp, p, True)


def big_pipe_obj(mp, p):
    """The same with send()/recv(): the object is pickled, the parent gets
    the same type back."""
    return _pipe_window(mp, p, False)


def big_pool_map(mp, p):
    """Pool(procs).map of POOL_TASKS tasks, each returning a fresh payload of
    p['result_size'] bytes (numpy uint8 filled with the task number, or bytes)."""
    need(mp, "Pool")
    size, ntask = p["result_size"], p["tasks"]
    metrics = []
    for kind in p["kinds"]:
        name = "%s %s" % (_size_name(size), kind)
        keys = ("big_pool_map_%s" % kind, "big_pool_map_%s_mbs" % kind)
        labels = ("Pool(%d).map %d tasks -> %s each" % (p["procs"], ntask, name),
                  "Pool(%d).map %d tasks -> %s each, payload" % (p["procs"], ntask, name))
        try:
            if kind == "numpy":
                ndarray = _numpy().ndarray
            pool = mp.Pool(p["procs"])
        except Exception as e:
            why = ("unsupported: %s" % e if isinstance(e, Unsupported)
                   else "%s: %s" % (type(e).__name__, _first_line(e)))
            metrics += [metric(keys[0], labels[0], "tasks/s", "higher", [], reason=why),
                        metric(keys[1], labels[1], "MB/s", "higher", [], reason=why)]
            continue
        items = [(kind, i, size) for i in range(ntask)]

        def body(k):
            for _ in range(k):
                rs = pool.map(task_fill, items)
                if len(rs) != ntask:
                    raise AssertionError("got %d results, expected %d" % (len(rs), ntask))
                for i, r in enumerate(rs):
                    v = i & 0xFF
                    if kind == "numpy":
                        if (not isinstance(r, ndarray) or r.dtype.name != "uint8"
                                or r.shape != (size,)):
                            raise AssertionError("task %d returned %s" % (i, type(r).__name__))
                    elif type(r) is not bytes or len(r) != size:
                        raise AssertionError("task %d returned %s" % (i, type(r).__name__))
                    if r[0] != v or r[size // 2] != v or r[size - 1] != v:
                        raise AssertionError("task %d: wrong content" % i)
        try:
            samples, n = measure_large(body, p, p["warm"])
            pool.close()
            pool.join()
        except Exception as e:
            pool.terminate()
            why = "%s: %s" % (type(e).__name__, _first_line(e))
            metrics += [metric(keys[0], labels[0], "tasks/s", "higher", [], reason=why),
                        metric(keys[1], labels[1], "MB/s", "higher", [], reason=why)]
            continue
        metrics += [metric(keys[0], labels[0], "tasks/s", "higher",
                           [ntask / s for s in samples], n=n),
                    metric(keys[1], labels[1], "MB/s", "higher",
                           [ntask * size / s / 1e6 for s in samples], n=n)]
        if PROGRESS:
            PROGRESS(metrics)
    return metrics


# ---------------------------------------------------------------------------
# reference: the machine's two-copy limit, bench/xcopy.c
# ---------------------------------------------------------------------------

def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "dragon_mp-bench")


def xcopy_binary():
    """bench/xcopy.c built once per version of its source (cached)."""
    src = os.path.join(BENCH_DIR, "xcopy.c")
    with open(src, "rb") as f:
        digest = hashlib.sha1(f.read()).hexdigest()[:12]
    exe = os.path.join(cache_dir(), "xcopy-" + digest)
    if os.access(exe, os.X_OK):
        return exe
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise Unsupported("no C compiler to build bench/xcopy.c")
    os.makedirs(cache_dir(), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="xcopy-", dir=cache_dir())
    os.close(fd)
    try:
        r = subprocess.run([cc, "-O2", "-o", tmp, src], capture_output=True, text=True,
                           timeout=120)
        if r.returncode != 0:
            raise RuntimeError("building xcopy failed: " + r.stderr.strip()[-200:])
        os.replace(tmp, exe)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return exe


def xcopy_mbs(exe, size, slots=3):
    """MB/s of xcopy's consumer with two alternating destinations (as a
    Python `b = q.get()` loop keeps the previous message alive)."""
    n = max(10, XCOPY_BYTES // size)
    arg = "%dK" % (size // KIB) if size % MIB else "%d" % (size // MIB)
    r = subprocess.run([exe, str(slots), str(n), arg], capture_output=True, text=True,
                       timeout=120)
    m = re.search(r"two alternating destinations: ([0-9.]+) us/MiB", r.stdout)
    if r.returncode != 0 or not m:
        raise RuntimeError("xcopy failed: %s" % (r.stderr or r.stdout).strip()[-200:])
    return MIB / float(m.group(1))   # bytes per µs = MB/s


def xcopy_metrics(p):
    """Reference rows, measured in the same subprocess after its children
    are gone: per size one sample, the best of p['xcopy_reps'] xcopy runs
    (a limit: two spinning processes lose whenever anything else runs on a
    core, so a loaded machine only lowers it).  limit=True: the table gives
    the Queue rows as % of the best sample of the row, any column."""
    out = []
    try:
        exe = xcopy_binary()
        why = None
    except Exception as e:
        exe, why = None, "%s: %s" % (type(e).__name__, _first_line(e))
    for size, _warm in p["sizes"]:
        name = _size_name(size)
        k = "xcopy_" + name.replace(" ", "")
        lab = "two-copy limit %s (bench/xcopy.c, best of %d)" % (name, p.get("xcopy_reps", 1))
        samples = []
        if exe:
            try:
                samples = [max(xcopy_mbs(exe, size) for _ in range(p.get("xcopy_reps", 1)))]
            except Exception as e:
                why = "%s: %s" % (type(e).__name__, _first_line(e))
        out.append(metric(k, lab, "MB/s", "higher", samples, ref=True, size=size,
                          refname="xcopy", limit=True,
                          **({"reason": why} if not samples else {})))
    return out


# ---------------------------------------------------------------------------
# registry (merged into run.py's): name -> (function, quick params, full params)
# sizes: [(bytes, warm-up operations)]; max_bytes bounds what one sample puts
# in flight (n_max); big_reps: samples for sizes >= big_size
# ---------------------------------------------------------------------------

NCPU = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
SIZES_FULL = [(64 * KIB, 100), (MIB, 20), (4 * MIB, 6), (64 * MIB, 1)]
SIZES_QUICK = [(64 * KIB, 30), (4 * MIB, 2)]
QUICK = dict(reps=3, sample_time=0.04, n_min=1, kinds=KINDS, sizes=SIZES_QUICK,
             max_bytes=256 * MIB, xcopy_reps=2, timeout=60)
FULL = dict(reps=5, sample_time=0.1, n_min=1, kinds=KINDS, sizes=SIZES_FULL,
            max_bytes=1024 * MIB, big_size=64 * MIB, big_reps=3, xcopy_reps=3, timeout=240)
WINDOWED_QUICK = dict(QUICK, sizes=[(64 * KIB, 3), (4 * MIB, 1)])
WINDOWED_FULL = dict(FULL, sizes=[(64 * KIB, 10), (MIB, 2), (4 * MIB, 1), (64 * MIB, 1)],
                     max_bytes=4096 * MIB)


def _p(quick, full, **both):
    return dict(quick, **both), dict(full, **both)


WORKLOADS = {
    "big_queue_oneway": (big_queue_oneway,) + _p(QUICK, FULL),
    "big_queue_rt": (big_queue_rt,) + _p(QUICK, FULL),
    "big_queue_window": (big_queue_window,) + _p(WINDOWED_QUICK, WINDOWED_FULL),
    "big_pipe_bytes": (big_pipe_bytes,) + _p(WINDOWED_QUICK, WINDOWED_FULL),
    "big_pipe_obj": (big_pipe_obj,) + _p(WINDOWED_QUICK, WINDOWED_FULL),
    "big_pool_map": (big_pool_map,) + _p(
        dict(QUICK, sizes=[], warm=1, n_min=1),
        dict(FULL, sizes=[], warm=1, n_min=2),
        kinds=("numpy", "bytes"), procs=2, tasks=POOL_TASKS, result_size=4 * MIB),
}
GROUPS = {"large": list(WORKLOADS)}

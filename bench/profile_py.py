"""cProfile of dragon_mp's Python hot paths, per thread and per process.

    python bench/profile_py.py pool_apply [N]   # Pool(2).apply_async: main, task/result handlers, a worker
    python bench/profile_py.py pool_map [N]
    python bench/profile_py.py queue [N]        # Queue one-way 64 B: producer child, consumer parent

Prints the top entries (tottime) of each profiled thread/process to stdout.
Every profiled function is at module level so that children (fresh
interpreters importing this file as __mp_main__) find it.
"""

import cProfile
import io
import os
import pstats
import sys
import tempfile
import time

TOP = 18
# One directory for the whole process tree (children inherit the variable).
OUT = os.environ.setdefault("PROFILE_DIR", tempfile.mkdtemp(prefix="dmp-prof-"))


def _dump(prof, name):
    prof.dump_stats(os.path.join(OUT, name + ".prof"))


def _report(name, wall=None):
    s = io.StringIO()
    st = pstats.Stats(os.path.join(OUT, name + ".prof"), stream=s)
    st.sort_stats("tottime").print_stats(TOP)
    lines = [ln for ln in s.getvalue().splitlines() if ln.strip()]
    print("==== %s%s" % (name, "" if wall is None else " (wall %.3f s)" % wall))
    # drop the pstats preamble except the totals line
    keep = [ln for ln in lines if "function calls" in ln or ln.lstrip()[:1].isdigit()
            or "ncalls" in ln]
    print("\n".join(keep))


def square(x):
    return x * x


def profiled(name, fn):
    def run(*a, **k):
        prof = cProfile.Profile()
        prof.enable()
        try:
            return fn(*a, **k)
        finally:
            prof.disable()
            _dump(prof, name)
    return run


def worker_main(*args, **kwds):
    from dragon_mp import pool as dpool
    return profiled("worker-%d" % os.getpid(), dpool.worker)(*args, **kwds)


def producer(q, n):
    payload = b"x" * 64
    prof = cProfile.Profile()
    prof.enable()
    put = q.put
    for _ in range(n):
        put(payload)
    put(None)
    prof.disable()
    _dump(prof, "producer")


def pool_workload(kind, n):
    import dragon_mp as mp
    from dragon_mp import pool as dpool

    class P(dpool.Pool):
        @staticmethod
        def Process(ctx, *args, **kwds):
            kwds["target"] = worker_main
            return ctx.Process(*args, **kwds)

    # Pool.__init__ names the handlers as Pool._handle_*: patch the class itself.
    for attr in ("_handle_tasks", "_handle_results"):
        setattr(dpool.Pool, attr, staticmethod(profiled(attr, getattr(dpool.Pool, attr))))
    pool = P(2)
    pool.map(square, range(100))       # warm
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    if kind == "pool_apply":
        rs = [pool.apply_async(square, (i,)) for i in range(n)]
        for r in rs:
            r.get()
    else:
        for _ in range(n // 10000 or 1):
            pool.map(square, range(10000))
    prof.disable()
    wall = time.perf_counter() - t0
    _dump(prof, "main")
    pool.close()
    pool.join()
    print("%s: %d tasks in %.3f s = %.0f tasks/s (profiled)" % (kind, n, wall, n / wall))
    for f in sorted(os.listdir(OUT)):
        _report(f[:-5], wall if f == "main.prof" else None)


def queue_workload(n):
    import dragon_mp as mp
    q = mp.Queue()
    p = mp.Process(target=producer, args=(q, n))
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    p.start()
    prof.enable()
    get = q.get
    while get() is not None:
        pass
    prof.disable()
    wall = time.perf_counter() - t0
    p.join()
    _dump(prof, "consumer")
    print("queue: %d msgs in %.3f s = %.0f msgs/s (profiled)" % (n, wall, n / wall))
    for f in sorted(os.listdir(OUT)):
        _report(f[:-5])


if __name__ == "__main__":
    kind = sys.argv[1] if len(sys.argv) > 1 else "pool_apply"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    if kind == "queue":
        queue_workload(n)
    else:
        pool_workload(kind, n)

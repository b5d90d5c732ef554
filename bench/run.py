#!/usr/bin/env python3
"""dragon_mp benchmark runner: stdlib multiprocessing vs dragon_mp, in one run.

    python bench/run.py [--quick] [--only NAME,...] [--json out.json] [--png out.png]
                        [--impl dragon_mp|stdlib-spawn|...] [--rounds N] [--timeout S]

Every (workload, implementation) pair runs in its own subprocess

    python bench/run.py --one NAME --impl IMPL [--quick]

which prints one JSON line (prefixed with MARK) and is killed after a timeout,
so a missing module, an exception or a hang in one implementation is reported
as 'n/a' instead of stopping the run.  Workloads of both implementations are
interleaved (per workload, order alternating between rounds), so both see the
same machine state.  See bench/README.md.

This file is also imported as ``__mp_main__`` by children started as fresh
interpreters (spawn, dragon_mp): the top level only defines things.
"""

import argparse
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

import workloads  # noqa: E402  (no side effects; also imported by children)

MARK = "@@DRAGON_MP_BENCH@@ "
TAG_VAR = "DRAGON_MP_BENCH_TAG"      # marks every process of one --one subprocess tree
IMPLS = ("stdlib", "stdlib-fork", "stdlib-spawn", "stdlib-forkserver", "dragon_mp")
# workloads that also compare against other stdlib start methods
EXTRA_BASELINES = {"process_start": ["stdlib-spawn"]}
CORE_API = ("Process", "Queue", "Pipe", "Pool", "Lock", "Event", "Semaphore")
NAMES = list(workloads.WORKLOADS)
CLEANUP_HELPERS = ("multiprocessing.resource_tracker", "dragon_mp.reaper")
GRACE = 3.0        # seconds a finished run's processes get to exit (dragon_mp's reaper)
EXIT_GRACE = 10.0  # seconds a subprocess gets to exit after printing its result


# ---------------------------------------------------------------------------
# helpers shared by both modes
# ---------------------------------------------------------------------------

def shm_dirs():
    dirs = ["/dev/shm"]
    d = os.environ.get("DRAGON_MP_SHM_DIR")
    if d and os.path.abspath(d) not in dirs:
        dirs.append(os.path.abspath(d))
    return dirs


def mapped_shm_files(pid="self"):
    """Files under the shm dirs (not yet unlinked) that process pid maps."""
    prefixes = tuple(d.rstrip("/") + "/" for d in shm_dirs())
    found = set()
    try:
        with open("/proc/%s/maps" % pid) as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6:
                    path = parts[5].strip()
                    if path.startswith(prefixes) and not path.endswith("(deleted)"):
                        found.add(path)
    except OSError:
        pass
    return sorted(found)


# ---------------------------------------------------------------------------
# child mode: --one NAME --impl IMPL
# ---------------------------------------------------------------------------

def load_impl(impl):
    if impl == "dragon_mp":
        import dragon_mp
        return dragon_mp
    import multiprocessing
    if impl == "stdlib":
        return multiprocessing.get_context()  # platform default: fork on Linux/3.11
    return multiprocessing.get_context(impl.split("-", 1)[1])


def impl_info(impl, mp):
    info = {"missing": [n for n in CORE_API if not hasattr(mp, n)]}
    if impl == "dragon_mp":
        info["file"] = getattr(mp, "__file__", None)
        info["version"] = getattr(mp, "__version__", None)
    try:
        info["start_method"] = mp.get_start_method()
    except Exception:
        pass
    return info


def emit(result):
    sys.stdout.write(MARK + json.dumps(result) + "\n")
    sys.stdout.flush()


def one(args):
    name, impl = args.one, args.impl
    result = {"workload": name, "impl": impl, "pid": os.getpid(), "quick": args.quick}
    try:
        mp = load_impl(impl)
    except BaseException as e:  # includes SystemExit from a broken package
        result.update(status="import", reason="import failed: %s: %s" % (type(e).__name__, e))
        traceback.print_exc()
        emit(result)
        return 0
    result["info"] = impl_info(impl, mp)
    if name == "_probe":
        result["status"] = "ok"
        emit(result)
        return 0
    fn, quick, full = workloads.WORKLOADS[name]
    params = quick if args.quick else full
    result["params"] = params
    t0 = time.perf_counter()
    try:
        result["metrics"] = fn(mp, params)
        result["status"] = "ok"
    except workloads.Unsupported as e:
        result.update(status="unsupported", reason=str(e))
    except BaseException as e:
        traceback.print_exc()
        msg = str(e).strip().splitlines()
        result.update(status="error",
                      reason="%s: %s" % (type(e).__name__, msg[0][:200] if msg else ""))
    result["seconds"] = time.perf_counter() - t0
    result["shm"] = mapped_shm_files()
    result["run_id"] = os.environ.get("DRAGON_MP_RUN")  # set by dragon_mp's head
    emit(result)
    return 0


# ---------------------------------------------------------------------------
# orchestrator: subprocess per (workload, implementation)
# ---------------------------------------------------------------------------

def tagged_pids(tag, run_ids=None):
    """Pids of the processes carrying TAG_VAR=tag in their environment; adds
    the DRAGON_MP_RUN values found there to the set run_ids."""
    needle = ("%s=%s" % (TAG_VAR, tag)).encode()
    me = os.getpid()
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            with open("/proc/%s/environ" % d, "rb") as f:
                env = f.read()
        except OSError:
            continue
        env = env.split(b"\0")
        if needle in env:
            pids.append(int(d))
            if run_ids is not None:
                run_ids.update(e[len(b"DRAGON_MP_RUN="):].decode(errors="replace")
                               for e in env if e.startswith(b"DRAGON_MP_RUN="))
    return pids


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
    except OSError:
        return "?"


def _kill_all(pids, killed):
    for pid in pids:
        c = cmdline(pid)
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append((pid, c))
        except OSError:
            pass


def _wait_gone(tag, seconds, run_ids=None):
    end = time.monotonic() + seconds
    while True:
        pids = tagged_pids(tag, run_ids)
        if not pids or time.monotonic() >= end:
            return pids
        time.sleep(0.05)


def reap_tagged(tag, grace, run_ids=None):
    """Wait up to grace seconds for the tagged processes to exit by themselves,
    then SIGKILL the rest by pid: first the workers, then (if still there after
    a moment to do their job) the cleanup helpers (stdlib resource_tracker,
    dragon_mp reaper).  Returns [(pid, cmdline)] of the killed processes."""
    pids = _wait_gone(tag, grace, run_ids)
    killed = []
    if pids:
        helpers = [p for p in pids if any(h in cmdline(p) for h in CLEANUP_HELPERS)]
        _kill_all([p for p in pids if p not in helpers], killed)
        _kill_all(_wait_gone(tag, 2.0, run_ids), killed)
        _wait_gone(tag, 2.0)
    return killed


def run_shm_files(run_ids):
    """Existing shm files of the given dragon_mp runs (dragon_mp.<runid>.*)."""
    files = set()
    prefixes = tuple("dragon_mp.%s." % r for r in run_ids if r)
    if not prefixes:
        return files
    for d in shm_dirs():
        try:
            files.update(os.path.join(d, f) for f in os.listdir(d) if f.startswith(prefixes))
        except OSError:
            pass
    return files


def child_env(tag):
    env = dict(os.environ)
    env.pop("DRAGON_MP_RUN", None)  # every subprocess is the head of its own run
    env[TAG_VAR] = tag
    path = [BENCH_DIR, REPO_ROOT]
    if env.get("PYTHONPATH"):
        path.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(path)
    return env


def run_one(name, impl, quick, timeout):
    """Run one (workload, impl) in a subprocess; always returns a result dict
    with 'status' in ok|unsupported|import|error|timeout|crash and 'notes'."""
    tag = "%d-%s" % (os.getpid(), uuid.uuid4().hex[:12])
    cmd = [sys.executable, os.path.join(BENCH_DIR, "run.py"), "--one", name, "--impl", impl]
    if quick:
        cmd.append("--quick")
    notes = []
    timed_out = False
    mapped = []
    run_ids = set()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        # output to files, not pipes: a leftover grandchild holding a pipe must not block us
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                env=child_env(tag), start_new_session=True)
        deadline = t0 + timeout
        reported = None  # when the result line appeared: then only EXIT_GRACE more
        seen = 0
        try:
            while True:
                try:
                    rc = proc.wait(0.2)
                    break
                except subprocess.TimeoutExpired:
                    pass
                now = time.monotonic()
                size = os.fstat(out.fileno()).st_size
                if reported is None and size != seen:
                    seen = size
                    if MARK.encode() in os.pread(out.fileno(), size, 0):
                        reported = now
                        deadline = min(deadline, now + EXIT_GRACE)
                if now >= deadline:
                    timed_out = True
                    for pid in [proc.pid] + tagged_pids(tag, run_ids):
                        mapped.extend(mapped_shm_files(pid))
                    proc.kill()
                    rc = proc.wait()
                    break
        except KeyboardInterrupt:
            proc.kill()
            proc.wait()
            reap_tagged(tag, 0.5)
            raise
        wall = time.monotonic() - t0
        killed = reap_tagged(tag, GRACE, run_ids)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    result = None
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARK):
            try:
                result = json.loads(line[len(MARK):])
            except ValueError:
                pass
            break
    if result is None:
        result = {"workload": name, "impl": impl}
        if timed_out:
            result.update(status="timeout", reason="timed out after %gs (killed)" % timeout)
        else:
            last = [l for l in stderr.strip().splitlines() if l.strip()]
            result.update(status="crash", reason="crashed, exit code %s%s" % (
                rc, (": " + last[-1].strip()[:160]) if last else ""))
    elif timed_out:
        notes.append("did not exit within %gs after reporting its result (hang at "
                     "exit/cleanup?), killed" % (deadline - reported))
    elif rc != 0:
        notes.append("exit code %s after reporting" % rc)
    if killed:
        notes.append("%d process(es) still running %gs after the subprocess ended, killed: %s" % (
            len(killed), GRACE, "; ".join("%d %s" % k for k in killed[:3])))
    # shm files left by this run (mapped by it, or named after its dragon_mp run id)
    # are reported and removed, so they do not pile up over a benchmark run
    run_ids.add(result.get("run_id"))
    ours = set(result.get("shm", [])) | set(mapped)
    leaked = sorted(set(f for f in ours if os.path.exists(f)) | run_shm_files(run_ids))
    for f in leaked:
        try:
            os.unlink(f)
        except OSError:
            pass
    if leaked:
        notes.append("left %d shm file(s), removed by the runner: %s" % (
            len(leaked), ", ".join(os.path.basename(f) for f in leaked[:3])))
    result["notes"] = notes
    result["wall"] = wall
    result["stderr_tail"] = stderr[-3000:]
    return result


# ---------------------------------------------------------------------------
# machine info, formatting, table
# ---------------------------------------------------------------------------

def machine_info():
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "cpu": cpu or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "python": "%s %s" % (platform.python_implementation(), platform.python_version()),
        "python_executable": sys.executable,
        "kernel": "%s %s" % (platform.system(), platform.release()),
        "arch": platform.machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "loadavg_start": load,
        "source": git_describe(),
    }


def git_describe():
    """'<commit> (+ uncommitted changes)' of the repository, or None."""
    try:
        head = subprocess.run(["git", "-C", REPO_ROOT, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", REPO_ROOT, "status", "--porcelain", "-uno"],
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def fmt(v):
    if v is None:
        return "n/a"
    a = abs(v)
    if a >= 100:
        return "{:,.0f}".format(v)
    if a >= 10:
        return "%.1f" % v
    if a >= 1:
        return "%.2f" % v
    return "%.3g" % v


def display(impl):
    return {"stdlib": "stdlib", "dragon_mp": "dragon_mp"}.get(impl, impl)


def median(xs):
    return statistics.median(xs) if xs else None


def spread(xs):
    """Half the interquartile range relative to the median (0.05 = ±5%)."""
    if len(xs) < 3:
        return 0.0
    q1, _, q3 = statistics.quantiles(xs, n=4)
    m = statistics.median(xs)
    return (q3 - q1) / 2 / m if m else 0.0


def ratio(base, cand, better):
    if base is None or cand is None or base <= 0 or cand <= 0:
        return None
    return base / cand if better == "lower" else cand / base


class Footnotes:
    def __init__(self):
        self.items = []

    def ref(self, text):
        if text not in self.items:
            self.items.append(text)
        return "[%d]" % (self.items.index(text) + 1)


def aggregate(runs):
    """Merge the results of several rounds of one (workload, impl)."""
    agg = {"runs": runs, "metrics": {}, "order": [], "failures": [], "notes": []}
    for r in runs:
        if r.get("status") == "ok":
            for m in r.get("metrics", []):
                if m["key"] not in agg["metrics"]:
                    agg["metrics"][m["key"]] = dict(m, samples=[])
                    agg["order"].append(m["key"])
                agg["metrics"][m["key"]]["samples"].extend(m["samples"])
        else:
            agg["failures"].append(r.get("reason") or r.get("status", "?"))
        agg["notes"].extend(r.get("notes", []))
    for m in agg["metrics"].values():
        m["median"] = median(m["samples"])
        m["spread"] = spread(m["samples"])
    return agg


def build_rows(names, results, base, cand, foot):
    rows = []

    def cell(agg, key, impl, name):
        """(value or None, text) for one cell."""
        if agg is None:
            return None, "n/a"
        m = agg["metrics"].get(key)
        if m is None:
            why = agg["failures"][0] if agg["failures"] else "no result"
            return None, "n/a " + foot.ref("%s: %s" % (display(impl), why[:300]))
        text = "%s %s" % (fmt(m["median"]), m["unit"])
        if agg["failures"]:  # some rounds failed, others did not
            text += " " + foot.ref("%s, %s: %d of %d rounds failed: %s" % (
                display(impl), name, len(agg["failures"]), len(agg["runs"]),
                agg["failures"][0]))
        return m["median"], text

    for name in names:
        per = results.get(name, {})
        b_agg, c_agg = per.get(base), per.get(cand)
        keys = []
        for agg in (b_agg, c_agg):
            for k in (agg or {}).get("order", []):
                if k not in keys:
                    keys.append(k)
        row_notes = []
        for impl, agg in ((base, b_agg), (cand, c_agg)):
            for n in sorted(set((agg or {}).get("notes", []))):
                row_notes.append(foot.ref("%s, %s: %s" % (display(impl), name, n)))
        if not keys:  # nobody produced a number
            _, bt = cell(b_agg, None, base, name)
            _, ct = cell(c_agg, None, cand, name)
            rows.append(dict(workload=name, label=name, key=name, base=None, cand=None,
                             base_text=bt, cand_text=ct, ratio=None, ref=False,
                             notes=" ".join(row_notes)))
            continue
        memcpy = {}
        for k in keys:
            m = ((c_agg or {}).get("metrics", {}).get(k)
                 or (b_agg or {}).get("metrics", {}).get(k))
            if m.get("ref"):
                memcpy[m.get("size")] = k
        extra_impls = [e for e in EXTRA_BASELINES.get(name, []) if e not in (base, cand)]
        for k in keys:
            m = ((b_agg or {}).get("metrics", {}).get(k)
                 or (c_agg or {}).get("metrics", {}).get(k))
            bv, bt = cell(b_agg, k, base, name)
            cv, ct = cell(c_agg, k, cand, name)
            notes = list(row_notes)
            r = None if m.get("ref") else ratio(bv, cv, m["better"])
            # % of memcpy for bandwidth rows, each side against its own run's memcpy
            if not m.get("ref") and m.get("size") in memcpy:
                parts = []
                for impl, agg, v in ((base, b_agg, bv), (cand, c_agg, cv)):
                    mm = (agg or {}).get("metrics", {}).get(memcpy[m["size"]])
                    if v is not None and mm and mm["median"]:
                        parts.append("%s %.0f%%" % (display(impl), 100 * v / mm["median"]))
                if parts:
                    notes.insert(0, "of memcpy: " + ", ".join(parts))
            for impl, agg in ((base, b_agg), (cand, c_agg)):
                mm = (agg or {}).get("metrics", {}).get(k)
                if mm and mm["spread"] > 0.10:
                    notes.append("%s noisy (IQR ±%.0f%%)" % (display(impl), 100 * mm["spread"]))
                if mm and mm.get("overlap") is not None and mm["overlap"] < 0.5:
                    notes.append("%s: workers overlapped only %.0f%% of the time" % (
                        display(impl), 100 * mm["overlap"]))
            rows.append(dict(workload=name, key=k, label=m["label"], unit=m["unit"],
                             better=m["better"], ref=m.get("ref", False), base=bv, cand=cv,
                             base_text=bt, cand_text=ct, ratio=r, notes="; ".join(notes)))
            for e in extra_impls:
                ev, et = cell(per.get(e), k, e, name)
                rows.append(dict(workload=name, key=k + "@" + e,
                                 label="%s (vs %s)" % (m["label"], display(e)),
                                 unit=m["unit"], better=m["better"], ref=False, base=ev,
                                 cand=cv, base_text=et + " (%s)" % display(e), cand_text=ct,
                                 ratio=ratio(ev, cv, m["better"]), notes=""))
    return rows


def table(rows, base, cand, base_method):
    bh = "%s (%s)" % (display(base), base_method) if base_method else display(base)
    head = ["workload", bh, display(cand), "ratio (>1: %s better)" % display(cand), "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---", "--:", "--:", "--:", "---"]) + "|"]
    for r in rows:
        rt = "(reference)" if r["ref"] else ("%.2f×" % r["ratio"] if r["ratio"] else "n/a")
        lines.append("| %s | %s | %s | %s | %s |" % (
            r["label"], r["base_text"], r["cand_text"], rt, r["notes"]))
    return "\n".join(lines)


def chart(path, rows, base, cand, machine):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("note: matplotlib is not installed, no chart written (pip install matplotlib)",
              file=sys.stderr)
        return False
    data = [(r["label"], r["ratio"]) for r in rows if not r["ref"]]
    if not any(v for _, v in data):
        print("note: no ratios to plot, no chart written", file=sys.stderr)
        return False
    data.reverse()  # first row on top
    labels = [d[0] for d in data]
    vals = [d[1] for d in data]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(data) + 1.8))
    # bars grow from 1.0 to the ratio: right = better, left = worse; n/a rows: no bar
    ax.barh(range(len(vals)), [(v - 1.0) if v else 0 for v in vals], left=1.0,
            color=["#2a9d4b" if (v or 1) >= 1 else "#c0392b" for v in vals])
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: "%g×" % x))
    ax.axvline(1.0, color="black", linewidth=1)
    known = [v for v in vals if v]
    ax.set_xlim(min(known + [1.0]) / 2, max(known + [1.0]) * 2)
    for i, v in enumerate(vals):
        if v:
            ax.text(v * (1.05 if v >= 1 else 0.95), i, "%.2f×" % v, va="center",
                    ha="left" if v >= 1 else "right", fontsize=8)
        else:
            ax.text(1.05, i, "n/a", va="center", ha="left", fontsize=8, color="gray")
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel("ratio, log scale (> 1: %s better than %s)" % (display(cand), display(base)))
    ax.set_title("%s vs %s — %s, %s cores, %s, %s" % (
        display(cand), display(base), machine["cpu"], machine["cores"], machine["python"],
        machine["date"]), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def orchestrate(args):
    base, cand = args.baseline, args.impl
    if base == cand:
        sys.exit("run.py: --baseline and --impl are the same (%s)" % base)
    names = NAMES
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        bad = [n for n in names if n not in workloads.WORKLOADS]
        if bad:
            sys.exit("run.py: unknown workload(s) %s; known: %s" % (
                ", ".join(bad), ", ".join(NAMES)))
    rounds = args.rounds or (1 if args.quick else 3)
    timeout = args.timeout or (10.0 if args.quick else 30.0)
    machine = machine_info()
    t_start = time.monotonic()
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    log("dragon_mp bench: %s mode, %d round(s), timeout %gs per run, workloads: %s" % (
        "quick" if args.quick else "full", rounds, timeout, ", ".join(names)))

    impls = [base, cand]
    for n in names:
        impls += [e for e in EXTRA_BASELINES.get(n, []) if e not in impls]
    probes = {}
    for impl in impls:
        probes[impl] = pr = run_one("_probe", impl, args.quick, timeout)
        info = pr.get("info", {})
        log("  probe %-14s %s%s%s" % (
            impl, pr["status"], (" (" + pr.get("reason", "") + ")") if pr["status"] != "ok" else "",
            ("  missing: " + ", ".join(info["missing"])) if info.get("missing") else ""))

    results = {}
    for name in names:
        wl_impls = [base, cand] + [e for e in EXTRA_BASELINES.get(name, []) if e not in (base, cand)]
        runs = {impl: [] for impl in wl_impls}
        for rnd in range(rounds):
            for impl in (wl_impls if rnd % 2 == 0 else wl_impls[::-1]):
                if probes[impl]["status"] != "ok":
                    if not runs[impl]:
                        runs[impl].append(dict(probes[impl], notes=[]))
                    continue
                if any(r["status"] == "timeout" for r in runs[impl]):
                    continue  # do not wait for the same hang again
                r = run_one(name, impl, args.quick, timeout)
                runs[impl].append(r)
                vals = ", ".join("%s %s" % (fmt(median(m["samples"])), m["unit"])
                                 for m in r.get("metrics", []))
                log("  %-17s %-14s %-11s %5.1fs  %s" % (
                    name, impl, r["status"], r.get("wall", 0.0),
                    vals or r.get("reason", "")) + "".join("\n      note: " + n for n in r["notes"]))
        results[name] = {impl: aggregate(rs) for impl, rs in runs.items()}

    try:
        machine["loadavg_end"] = os.getloadavg()
    except OSError:
        pass
    foot = Footnotes()
    rows = build_rows(names, results, base, cand, foot)
    base_method = probes[base].get("info", {}).get("start_method")
    cinfo = probes[cand].get("info", {})
    cdesc = display(cand)
    if cand == "dragon_mp":
        if probes[cand]["status"] == "ok":
            cdesc += " %s (%s)" % (cinfo.get("version") or "(no __version__)", cinfo.get("file"))
        else:
            cdesc += " — %s" % probes[cand].get("reason")
    elif cinfo.get("start_method"):
        cdesc += " (start method %s)" % cinfo["start_method"]
    la = lambda t: ("%.2f" % t[0]) if t else "?"  # noqa: E731

    out = []
    out.append("## dragon_mp benchmark — %s" % machine["date"])
    out.append("")
    out.append("- Machine: %s, %s cores (%s usable), %s, %s" % (
        machine["cpu"], machine["cores"], machine["usable_cores"], machine["kernel"],
        machine["arch"]))
    out.append("- Python: %s (%s)" % (machine["python"], machine["python_executable"]))
    if machine.get("source"):
        out.append("- Source: git %s" % machine["source"])
    out.append("- Compared: %s (multiprocessing.get_context()%s) vs %s" % (
        display(base), ", start method %s" % base_method if base_method else "", cdesc))
    out.append("- Mode: %s; %d round(s), implementations interleaved per workload (order "
               "alternating by round), each in its own subprocess; median of all samples "
               "after warm-up; load average (1 min) %s at start, %s at end; %.0f s total" % (
                   "quick" if args.quick else "full", rounds, la(machine["loadavg_start"]),
                   la(machine.get("loadavg_end")), time.monotonic() - t_start))
    out.append("")
    out.append(table(rows, base, cand, base_method))
    out.append("")
    out.append("Ratio = how many times better %s is than %s on that row: %s/%s for times "
               "(µs, ms, ns), %s/%s for rates (/s, MB/s); **> 1 means %s is better**, < 1 worse. "
               "Only ratios from the same run are comparable; absolute numbers from "
               "different runs or machines are not." % (
                   display(cand), display(base), display(base), display(cand),
                   display(cand), display(base), display(cand)))
    if foot.items:
        out.append("")
        for i, t in enumerate(foot.items, 1):
            out.append("[%d] %s  " % (i, t))
    text = "\n".join(out)
    print(text)

    if args.json:
        doc = {"machine": machine,
               "config": {"quick": args.quick, "rounds": rounds, "timeout": timeout,
                          "baseline": base, "impl": cand, "workloads": names,
                          "params": {n: workloads.WORKLOADS[n][1 if args.quick else 2]
                                     for n in names}},
               "probes": probes, "results": results, "rows": rows,
               "footnotes": foot.items, "markdown": text}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1, default=str)
        log("wrote %s" % args.json)
    if args.png and chart(args.png, rows, base, cand, machine):
        log("wrote %s" % args.png)
    return 0


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description="Benchmark stdlib multiprocessing vs dragon_mp in one run.")
    ap.add_argument("--quick", action="store_true",
                    help="small sizes, 1 round: well under a minute (smoke test)")
    ap.add_argument("--only", metavar="NAME,...",
                    help="run only these workloads: " + ", ".join(NAMES))
    ap.add_argument("--json", metavar="OUT.json", help="write all results and samples as JSON")
    ap.add_argument("--png", metavar="OUT.png", help="bar chart of the ratios (needs matplotlib)")
    ap.add_argument("--impl", default="dragon_mp", choices=IMPLS,
                    help="implementation under test (second column; default dragon_mp). "
                         "With --one: the implementation to run.")
    ap.add_argument("--baseline", default="stdlib", choices=IMPLS,
                    help="first column (default: stdlib, platform default start method)")
    ap.add_argument("--rounds", type=int, default=0,
                    help="runs of every (workload, impl), interleaved (default 1 quick, 3 full)")
    ap.add_argument("--timeout", type=float, default=0,
                    help="seconds per (workload, impl) subprocess (default 10 quick, 30 full)")
    ap.add_argument("--list", action="store_true", help="list the workloads and exit")
    ap.add_argument("--one", metavar="NAME", choices=NAMES + ["_probe"],
                    help=argparse.SUPPRESS)  # internal: run one workload, print a JSON line
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.list:
        for n in NAMES:
            print(n)
        return 0
    if args.one:
        return one(args)
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())

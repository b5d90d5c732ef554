#!/usr/bin/env python3
"""dragon_mp benchmark runner: stdlib multiprocessing vs dragon_mp, in one run.

    python bench/run.py [--quick] [--only NAME,...] [--json out.json] [--png out.png]
                        [--impl dragon_mp|stdlib-spawn|...] [--rounds N] [--timeout S]
                        [--with-dragonhpc]

Every (workload, implementation) pair runs in its own subprocess

    python bench/run.py --one NAME --impl IMPL [--quick]

which prints one JSON line (prefixed with MARK) and is killed after a timeout,
so a missing module, an exception or a hang in one implementation is reported
as 'n/a' instead of stopping the run.  Workloads of both implementations are
interleaved (per workload, order alternating between rounds), so both see the
same machine state.  --with-dragonhpc adds DragonHPC as a third column, run
the same way under its own launcher (bench/dragonhpc.py).  See bench/README.md.

This file is also imported as ``__mp_main__`` by children started as fresh
interpreters (spawn, dragon_mp): the top level only defines things.
"""

import argparse
import datetime
import fnmatch
import json
import os
import platform
import shutil
import signal
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
if __name__ == "__main__":
    # Not in the children: a dragon_mp or spawn child re-runs this file as
    # __mp_main__, and every module imported here is time its start pays (the
    # process-start rows: 2.6 -> 4.0 ms per start with these three). A child
    # that needs large_workloads imports it when it unpickles its target.
    import large_workloads
    import dragonhpc
    from report import Footnotes, aggregate, build_rows, chart, display, fmt, median, table

MARK = "@@DRAGON_MP_BENCH@@ "
PARTIAL_MARK = "@@DRAGON_MP_BENCH_PARTIAL@@ "  # metrics so far (does not contain MARK)
TAG_VAR = "DRAGON_MP_BENCH_TAG"      # marks every process of one --one subprocess tree
IMPLS = ("stdlib", "stdlib-fork", "stdlib-spawn", "stdlib-forkserver", "dragon_mp", "dragonhpc")
if __name__ == "__main__":
    REGISTRY = dict(workloads.WORKLOADS, **large_workloads.WORKLOADS)
    GROUPS = dict(large_workloads.GROUPS, all=list(REGISTRY))  # --only NAME expands a group
else:
    REGISTRY, GROUPS = dict(workloads.WORKLOADS), {}
DEFAULT = list(workloads.WORKLOADS)    # without --only; the large ones take ~16 minutes more
# workloads that also compare against other stdlib start methods
EXTRA_BASELINES = {"process_start": ["stdlib-spawn"]}
CORE_API = ("Process", "Queue", "Pipe", "Pool", "Lock", "Event", "Semaphore")
NAMES = list(REGISTRY)
CLEANUP_HELPERS = ("multiprocessing.resource_tracker", "dragon_mp.reaper")
GRACE = 3.0        # seconds a finished run's processes get to exit (dragon_mp's reaper)
EXIT_GRACE = 10.0  # seconds a subprocess gets to exit after printing its result
DHPC_EXTRA = 30.0  # more seconds for a DragonHPC run: its launcher's bring-up and teardown


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
    if impl == "dragonhpc":  # under <venv>/bin/dragon -s, from one() under the main guard
        import dragon  # noqa: F401  (DragonHPC; installs the "dragon" start method)
        import multiprocessing
        multiprocessing.set_start_method("dragon")
        return multiprocessing
    import multiprocessing
    if impl == "stdlib":
        return multiprocessing.get_context()  # platform default: fork on Linux/3.11
    return multiprocessing.get_context(impl.split("-", 1)[1])


def impl_info(impl, mp):
    info = {"missing": [n for n in CORE_API if not hasattr(mp, n)]}
    if impl == "dragon_mp":
        info["file"] = getattr(mp, "__file__", None)
        info["version"] = getattr(mp, "__version__", None)
    elif impl == "dragonhpc":
        info.update(dragonhpc.version_info())
    try:
        info["start_method"] = mp.get_start_method()
    except Exception:
        pass
    return info


def emit(result, mark=MARK):
    sys.stdout.write(mark + json.dumps(result) + "\n")
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
    fn, quick, full = REGISTRY[name]
    params = quick if args.quick else full
    result["params"] = params
    t0 = time.perf_counter()
    # large workloads report the metrics of every finished (kind, size), so a
    # run killed by the timeout keeps them
    large_workloads.PROGRESS = lambda metrics: emit(
        dict(result, status="partial", metrics=metrics, seconds=time.perf_counter() - t0),
        PARTIAL_MARK)
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


def detach(impl):
    """Popen arguments that keep a run away from the terminal's signals: a new
    session, except for DragonHPC, whose local services call setpgid(0, 0),
    which fails for a session leader (EPERM) and leaves its launcher waiting
    forever: a new process group only."""
    if impl != "dragonhpc":
        return {"start_new_session": True}
    if sys.version_info >= (3, 11):
        return {"process_group": 0}
    return {"preexec_fn": os.setpgrp}


def _last_marked(stdout, mark):
    """The JSON of the last line carrying mark (a launcher may prefix lines)."""
    for line in reversed(stdout.splitlines()):
        i = line.find(mark)
        if i >= 0:
            try:
                return json.loads(line[i + len(mark):])
            except ValueError:
                return None
    return None


def run_one(name, impl, quick, timeout, dragon=None):
    """Run one (workload, impl) in a subprocess; always returns a result dict
    with 'status' in ok|partial|unsupported|import|error|timeout|crash and
    'notes'.  impl 'dragonhpc' runs under DragonHPC's launcher `dragon`
    (its venv's bin/dragon, absolute path)."""
    tag = "%d-%s" % (os.getpid(), uuid.uuid4().hex[:12])
    args = ["--one", name, "--impl", impl] + (["--quick"] if quick else [])
    script = os.path.join(BENCH_DIR, "run.py")
    env, cwd, shm_before = child_env(tag), None, None
    if impl == "dragonhpc":
        cmd = dragonhpc.command(dragon, script, args)
        env = dragonhpc.environ(env, dragon)
        cwd = tempfile.mkdtemp(prefix="dragon_mp-bench-dhpc-")  # whatever it writes there
        shm_before = dragonhpc.shm_snapshot()
    else:
        cmd = [sys.executable, script] + args
    notes = []
    timed_out = False
    mapped = []
    run_ids = set()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        # output to files, not pipes: a leftover grandchild holding a pipe must not block us
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                env=env, cwd=cwd, **detach(impl))
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
    result = _last_marked(stdout, MARK)
    if result is None:
        partial = _last_marked(stdout, PARTIAL_MARK)
        result = partial or {"workload": name, "impl": impl}
        if timed_out:
            why = "timed out after %gs (killed)" % timeout
        else:
            last = [l for l in (stderr + "\n" + stdout).strip().splitlines()
                    if l.strip() and PARTIAL_MARK not in l and not l.startswith("+++ head")]
            why = "crashed, exit code %s%s" % (
                rc, (": " + last[-1].strip()[:160]) if last else "")
        if partial:  # keep what it measured before
            why += " after reporting %d row(s)" % len(partial.get("metrics", []))
            result.update(status="partial", reason=why)
        else:
            result.update(status="timeout" if timed_out else "crash", reason=why)
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
    leaked = set(f for f in ours if os.path.exists(f)) | run_shm_files(run_ids)
    if impl == "dragonhpc":  # its pools are named after the launcher's pid (proc.pid)
        theirs, unsure = dragonhpc.leftover_shm(shm_before, proc.pid, ours)
        leaked.update(theirs)
        if unsure:
            notes.append("%d new /dev/shm file(s) named like DragonHPC pools, not removed (not "
                         "attributable to this run): %s" % (
                             len(unsure), ", ".join(os.path.basename(f) for f in unsure[:3])))
        left = sorted(os.listdir(cwd))
        if left:
            notes.append("left %d file(s) in its working directory, removed: %s" % (
                len(left), ", ".join(left[:3])))
        shutil.rmtree(cwd, ignore_errors=True)
    leaked = sorted(leaked)
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
    result["stdout_tail"] = "\n".join(l for l in stdout.splitlines()
                                      if MARK not in l and PARTIAL_MARK not in l)[-2000:]
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


def select(only):
    """Workload names from --only: names, group names (large, all), patterns (big_*)."""
    if not only:
        return list(DEFAULT)
    names, bad = [], []
    for item in (n.strip() for n in only.split(",")):
        if not item:
            continue
        found = (GROUPS.get(item) or ([item] if item in REGISTRY else None)
                 or [n for n in NAMES if fnmatch.fnmatchcase(n, item)])
        if not found:
            bad.append(item)
        names += [n for n in found if n not in names]
    if bad:
        sys.exit("run.py: unknown workload(s) %s; known: %s; groups: %s" % (
            ", ".join(bad), ", ".join(NAMES), ", ".join(GROUPS)))
    return names


def describe(impl, probe):
    """How the header names an implementation under test."""
    info, d = probe.get("info", {}), display(impl)
    if probe["status"] != "ok":
        return d + " — %s" % probe.get("reason")
    if impl == "dragon_mp":
        return d + " %s (%s)" % (info.get("version") or "(no __version__)", info.get("file"))
    if impl == "dragonhpc":
        return d + " %s (%s), start method %s, each run launched as `%s -s bench/run.py ...`" % (
            info.get("version"), info.get("file"), info.get("start_method"), DRAGON["exe"])
    if info.get("start_method"):
        return d + " (start method %s)" % info["start_method"]
    return d


DRAGON = {"exe": None}   # DragonHPC's bin/dragon once its venv is ready


def orchestrate(args):
    base, cand = args.baseline, args.impl
    if base == cand:
        sys.exit("run.py: --baseline and --impl are the same (%s)" % base)
    cands = [cand] + (["dragonhpc"] if args.with_dragonhpc and "dragonhpc" not in (base, cand)
                      else [])
    names = select(args.only)
    rounds = args.rounds or (1 if args.quick else 3)
    default_timeout = 10.0 if args.quick else 30.0

    def timeout_of(name, impl):
        """--timeout, else the workload's own (large ones), else the default;
        DragonHPC gets DHPC_EXTRA more for its launcher's start and teardown."""
        t = args.timeout
        if not t and name in REGISTRY:
            t = REGISTRY[name][1 if args.quick else 2].get("timeout")
        t = t or default_timeout
        return t + (DHPC_EXTRA if impl == "dragonhpc" else 0)

    machine = machine_info()
    t_start = time.monotonic()
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    log("dragon_mp bench: %s mode, %d round(s), timeout %s per run, workloads: %s" % (
        "quick" if args.quick else "full", rounds,
        "%gs" % args.timeout if args.timeout else "%gs (large workloads: their own)"
        % default_timeout, ", ".join(names)))

    impls = [base] + cands
    for n in names:
        impls += [e for e in EXTRA_BASELINES.get(n, []) if e not in impls]
    probes = {}
    for impl in impls:
        if impl == "dragonhpc" and DRAGON["exe"] is None:
            DRAGON["exe"], why = dragonhpc.ensure_venv(args.dragonhpc_venv, args.dragonhpc_wheel,
                                                       log)
            if why:
                probes[impl] = {"workload": "_probe", "impl": impl, "status": "import",
                                "reason": why, "notes": []}
                log("  probe %-14s import (%s)" % (impl, why))
                continue
        probes[impl] = pr = run_one("_probe", impl, args.quick, timeout_of("_probe", impl),
                                    DRAGON["exe"])
        info = pr.get("info", {})
        log("  probe %-14s %s%s%s" % (
            impl, pr["status"], (" (" + pr.get("reason", "") + ")") if pr["status"] != "ok" else "",
            ("  missing: " + ", ".join(info["missing"])) if info.get("missing") else ""))

    results = {}
    for name in names:
        wl_impls = [base] + cands + [e for e in EXTRA_BASELINES.get(name, [])
                                     if e not in [base] + cands]
        runs = {impl: [] for impl in wl_impls}
        for rnd in range(rounds):
            for impl in (wl_impls if rnd % 2 == 0 else wl_impls[::-1]):
                if probes[impl]["status"] != "ok":
                    if not runs[impl]:
                        runs[impl].append(dict(probes[impl], notes=[]))
                    continue
                if any(r["status"] == "timeout" or (r["status"] == "partial" and "timed out"
                                                     in r.get("reason", "")) for r in runs[impl]):
                    continue  # do not wait for the same hang again
                r = run_one(name, impl, args.quick, timeout_of(name, impl), DRAGON["exe"])
                runs[impl].append(r)
                vals = ", ".join("%s %s" % (fmt(median(m["samples"])), m["unit"])
                                 for m in r.get("metrics", []) if m["samples"])
                log("  %-17s %-14s %-11s %5.1fs  %s" % (
                    name, impl, r["status"], r.get("wall", 0.0),
                    (vals or r.get("reason", "")) + (
                        "  [%s]" % r["reason"] if vals and r["status"] != "ok" else "")
                ) + "".join("\n      note: " + n for n in r["notes"]))
        results[name] = {impl: aggregate(rs) for impl, rs in runs.items()}

    try:
        machine["loadavg_end"] = os.getloadavg()
    except OSError:
        pass
    foot = Footnotes()
    rows = build_rows(names, results, base, cands, foot, EXTRA_BASELINES)
    base_method = probes[base].get("info", {}).get("start_method")
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
        display(base), ", start method %s" % base_method if base_method else "",
        " and ".join(describe(c, probes[c]) for c in cands)))
    out.append("- Mode: %s; %d round(s), implementations interleaved per workload (order "
               "alternating by round), each in its own subprocess; median of all samples "
               "after warm-up; load average (1 min) %s at start, %s at end; %.0f s total" % (
                   "quick" if args.quick else "full", rounds, la(machine["loadavg_start"]),
                   la(machine.get("loadavg_end")), time.monotonic() - t_start))
    out.append("")
    out.append(table(rows, base, cands, base_method))
    out.append("")
    who = display(cand) if len(cands) == 1 else "X"
    out.append("Ratio = how many times better %s is than %s on that row: %s/%s for times "
               "(µs, ms, ns), %s/%s for rates (/s, MB/s); **> 1 means %s is better**, "
               "< 1 worse%s. Only ratios from the same run are comparable; absolute numbers from "
               "different runs or machines are not." % (
                   who, display(base), display(base), who, who, display(base), who,
                   "" if len(cands) == 1 else " (X = the column left of the ratio: %s)"
                   % ", ".join(display(c) for c in cands)))
    if foot.items:
        out.append("")
        for i, t in enumerate(foot.items, 1):
            out.append("[%d] %s  " % (i, t))
    text = "\n".join(out)
    print(text)

    if args.json:
        doc = {"machine": machine,
               "config": {"quick": args.quick, "rounds": rounds,
                          "timeout": args.timeout or default_timeout,
                          "timeouts": {n: {i: timeout_of(n, i) for i in [base] + cands}
                                       for n in names},
                          "baseline": base, "impl": cand, "candidates": cands,
                          "dragonhpc": DRAGON["exe"], "workloads": names,
                          "params": {n: REGISTRY[n][1 if args.quick else 2] for n in names}},
               "probes": probes, "results": results, "rows": rows,
               "footnotes": foot.items, "markdown": text}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1, default=str)
        log("wrote %s" % args.json)
    if args.png and chart(args.png, rows, base, cands, machine):
        log("wrote %s" % args.png)
    return 0


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description="Benchmark stdlib multiprocessing vs dragon_mp in one run.")
    ap.add_argument("--quick", action="store_true",
                    help="small sizes, 1 round: well under a minute (smoke test)")
    ap.add_argument("--only", metavar="NAME,...",
                    help="run these workloads (names, patterns such as 'big_*', or a group: "
                         "%s); default: all but the large ones. Names: %s" % (
                             ", ".join(GROUPS), ", ".join(NAMES)))
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
                    help="seconds per (workload, impl) subprocess (default 10 quick, 30 full; "
                         "the large workloads have their own, 60 quick, 240 full; DragonHPC "
                         "runs get %g s more)" % DHPC_EXTRA)
    ap.add_argument("--with-dragonhpc", action="store_true",
                    help="add DragonHPC (pip package dragonhpc %s, in its own venv, created "
                         "once) as a third column, each run under its launcher `dragon -s`"
                         % dragonhpc.VERSION)
    ap.add_argument("--dragonhpc-venv", metavar="DIR", default=dragonhpc.DEFAULT_VENV,
                    help="DragonHPC's venv (default %(default)s)")
    ap.add_argument("--dragonhpc-wheel", metavar="FILE",
                    help="create the venv from this dragonhpc wheel instead of PyPI")
    ap.add_argument("--list", action="store_true",
                    help="list the workloads (and groups, for --only) and exit")
    ap.add_argument("--one", metavar="NAME", choices=NAMES + ["_probe"],
                    help=argparse.SUPPRESS)  # internal: run one workload, print a JSON line
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.list:
        for n in NAMES:
            print(n)
        for g, members in GROUPS.items():
            print("%s = %s" % (g, ",".join(members)))
        return 0
    if args.one:
        return one(args)
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())

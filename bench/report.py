"""Aggregation, the Markdown table and the chart of bench/run.py.

Columns: the baseline, then one (value, ratio vs baseline) pair per
implementation under test (dragon_mp; DragonHPC with --with-dragonhpc).
"""

import statistics
import sys


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
    """Merge the results of several rounds of one (workload, impl).  A run
    with status 'partial' (killed after reporting some metrics) contributes
    its metrics and a failure.  A metric with no samples carries a 'reason'
    (why that cell could not be measured)."""
    agg = {"runs": runs, "metrics": {}, "order": [], "failures": [], "notes": []}
    for r in runs:
        if r.get("status") in ("ok", "partial"):
            for m in r.get("metrics", []):
                if m["key"] not in agg["metrics"]:
                    agg["metrics"][m["key"]] = dict(m, samples=[], reasons=[])
                    agg["order"].append(m["key"])
                mm = agg["metrics"][m["key"]]
                mm["samples"].extend(m["samples"])
                if m.get("reason"):
                    mm["reasons"].append(m["reason"])
                if m.get("note"):
                    agg["notes"].append(m["note"])
        if r.get("status") != "ok":
            agg["failures"].append(r.get("reason") or r.get("status", "?"))
        agg["notes"].extend(r.get("notes", []))
    for m in agg["metrics"].values():
        m["median"] = median(m["samples"])
        m["spread"] = spread(m["samples"])
    return agg


def best_of(aggs, key):
    """The highest sample of metric key in any of aggs (None if none)."""
    xs = [x for agg in aggs for x in ((agg or {}).get("metrics", {}).get(key) or {}).get(
        "samples", [])]
    return max(xs) if xs else None


def build_rows(names, results, base, cands, foot, extra_baselines=None):
    """One row per metric: the baseline's value, then for every candidate its
    value and ratio against the baseline.  extra_baselines: {workload: [impl]}
    adds rows comparing the candidates against those implementations."""
    rows = []
    extra_baselines = extra_baselines or {}

    def cell(agg, key, impl, name):
        """(value or None, text) for one cell."""
        if agg is None:
            return None, "n/a"
        m = agg["metrics"].get(key)
        if m is None:
            why = agg["failures"][0] if agg["failures"] else "no result"
            return None, "n/a " + foot.ref("%s: %s" % (display(impl), why[:300]))
        if m["median"] is None:
            why = (m["reasons"] or agg["failures"] or ["no samples"])[0]
            return None, "n/a " + foot.ref("%s, %s: %s" % (display(impl), name, why[:300]))
        text = "%s %s" % (fmt(m["median"]), m["unit"])
        if agg["failures"]:  # some rounds failed, others did not
            text += " " + foot.ref("%s, %s: %d of %d rounds failed: %s" % (
                display(impl), name, len(agg["failures"]), len(agg["runs"]),
                agg["failures"][0]))
        elif m["reasons"]:
            text += " " + foot.ref("%s, %s: %d round(s) gave no sample: %s" % (
                display(impl), name, len(m["reasons"]), m["reasons"][0]))
        return m["median"], text

    impls = [base] + list(cands)
    for name in names:
        per = results.get(name, {})
        aggs = [per.get(i) for i in impls]
        keys = []
        for agg in aggs:
            for k in (agg or {}).get("order", []):
                if k not in keys:
                    keys.append(k)
        row_notes = []
        for impl, agg in zip(impls, aggs):
            for n in sorted(set((agg or {}).get("notes", []))):
                row_notes.append(foot.ref("%s, %s: %s" % (display(impl), name, n)))

        def metric_of(k):
            for agg in aggs:
                m = (agg or {}).get("metrics", {}).get(k)
                if m:
                    return m

        if not keys:  # nobody produced a number
            texts = [cell(agg, None, impl, name)[1] for impl, agg in zip(impls, aggs)]
            rows.append(dict(workload=name, label=name, key=name, base=None, cand=None,
                             base_text=texts[0], cand_text=texts[1], ratio=None, ref=False,
                             cells=[dict(impl=i, value=None, text=t, ratio=None)
                                    for i, t in zip(cands, texts[1:])],
                             notes=" ".join(row_notes)))
            continue
        refs = {}  # size -> key of the reference metric (memcpy, xcopy) of that size
        for k in keys:
            m = metric_of(k)
            if m.get("ref"):
                refs[m.get("size")] = k
        extra_impls = [e for e in extra_baselines.get(name, []) if e not in impls]
        for k in keys:
            m = metric_of(k)
            vals = [cell(agg, k, impl, name) for impl, agg in zip(impls, aggs)]
            (bv, bt), cvals = vals[0], vals[1:]
            notes = list(row_notes)
            # % of the reference for bandwidth rows: each side against its own run's
            # (memcpy), or against the best of the row (a limit of the machine, the
            # same program in every column: xcopy)
            if not m.get("ref") and m.get("size") in refs:
                rk = refs[m["size"]]
                ref_m = metric_of(rk)
                best = best_of(aggs, rk) if ref_m.get("limit") else None
                parts = []
                for impl, agg, (v, _) in zip(impls, aggs, vals):
                    mm = (agg or {}).get("metrics", {}).get(rk)
                    r = best or (mm and mm["median"])
                    if v is not None and r:
                        parts.append("%s %.0f%%" % (display(impl), 100 * v / r))
                if parts:
                    notes.insert(0, "of %s%s: %s" % (
                        ref_m.get("refname", "memcpy"),
                        " (best, %s %s)" % (fmt(best), ref_m["unit"]) if best else "",
                        ", ".join(parts)))
            for impl, agg in zip(impls, aggs):
                mm = (agg or {}).get("metrics", {}).get(k)
                if mm and mm["spread"] > 0.10:
                    notes.append("%s noisy (IQR ±%.0f%%)" % (display(impl), 100 * mm["spread"]))
                if mm and mm.get("overlap") is not None and mm["overlap"] < 0.5:
                    notes.append("%s: workers overlapped only %.0f%% of the time" % (
                        display(impl), 100 * mm["overlap"]))
            cells = [dict(impl=c, value=v, text=t,
                          ratio=None if m.get("ref") else ratio(bv, v, m["better"]))
                     for c, (v, t) in zip(cands, cvals)]
            rows.append(dict(workload=name, key=k, label=m["label"], unit=m["unit"],
                             better=m["better"], ref=m.get("ref", False), base=bv,
                             base_text=bt, cand=cells[0]["value"], cand_text=cells[0]["text"],
                             ratio=cells[0]["ratio"], cells=cells, notes="; ".join(notes)))
            for e in extra_impls:
                ev, et = cell(per.get(e), k, e, name)
                ecells = [dict(c, ratio=ratio(ev, c["value"], m["better"])) for c in cells]
                rows.append(dict(workload=name, key=k + "@" + e,
                                 label="%s (vs %s)" % (m["label"], display(e)),
                                 unit=m["unit"], better=m["better"], ref=False, base=ev,
                                 base_text=et + " (%s)" % display(e),
                                 cand=cells[0]["value"], cand_text=cells[0]["text"],
                                 ratio=ecells[0]["ratio"], cells=ecells, notes=""))
    return rows


def table(rows, base, cands, base_method):
    bh = "%s (%s)" % (display(base), base_method) if base_method else display(base)
    head = ["workload", bh]
    for c in cands:
        head += [display(c), "ratio (>1: %s better)" % display(c)]
    head.append("notes")
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---", "--:"] + ["--:", "--:"] * len(cands) + ["---"]) + "|"]
    for r in rows:
        cols = [r["label"], r["base_text"]]
        for c in r["cells"]:
            cols += [c["text"], "(reference)" if r["ref"] else (
                "%.2f×" % c["ratio"] if c["ratio"] else "n/a")]
        cols.append(r["notes"])
        lines.append("| " + " | ".join(cols) + " |")
    return "\n".join(lines)


def chart(path, rows, base, cands, machine):
    """Horizontal bars of the ratios, log scale, one bar per candidate."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("note: matplotlib is not installed, no chart written (pip install matplotlib)",
              file=sys.stderr)
        return False
    data = [(r["label"], [c["ratio"] for c in r["cells"]]) for r in rows if not r["ref"]]
    if not any(v for _, vs in data for v in vs):
        print("note: no ratios to plot, no chart written", file=sys.stderr)
        return False
    data.reverse()  # first row on top
    labels = [d[0] for d in data]
    n = len(cands)
    h = 0.8 / n
    fig, ax = plt.subplots(figsize=(10, (0.3 + 0.15 * n) * len(data) + 1.8))
    known = [v for _, vs in data for v in vs if v]
    greens, reds = ["#2a9d4b", "#7fb3d5", "#b07cc6"], ["#c0392b", "#e67e22", "#8e44ad"]
    for j in range(n):
        vals = [vs[j] for _, vs in data]
        ys = [i + (n - 1 - j - (n - 1) / 2) * h for i in range(len(vals))]
        # bars grow from 1.0 to the ratio: right = better, left = worse; n/a rows: no bar
        ax.barh(ys, [(v - 1.0) if v else 0 for v in vals], left=1.0, height=h,
                color=[greens[j % 3] if (v or 1) >= 1 else reds[j % 3] for v in vals],
                label=display(cands[j]))
        for y, v in zip(ys, vals):
            if v:
                ax.text(v * (1.05 if v >= 1 else 0.95), y, "%.2f×" % v, va="center",
                        ha="left" if v >= 1 else "right", fontsize=7 if n > 1 else 8)
            else:
                ax.text(1.05, y, "n/a", va="center", ha="left", fontsize=7, color="gray")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: "%g×" % x))
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xlim(min(known + [1.0]) / 2, max(known + [1.0]) * 2)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=8)
    names = " / ".join(display(c) for c in cands)
    ax.set_xlabel("ratio, log scale (> 1: %s better than %s)" % (names, display(base)))
    if n > 1:
        ax.legend(fontsize=8, loc="lower right")
    ax.set_title("%s vs %s — %s, %s cores, %s, %s" % (
        names, display(base), machine["cpu"], machine["cores"], machine["python"],
        machine["date"]), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True

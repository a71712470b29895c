"""Tables (Markdown, printed and written into docs/performance.md) and PNG plots.

Plots need matplotlib (the `bench` extra); without it the run still writes JSON and
tables and says which plots it skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.stats import summarize
from benchmarks.targets import Verdict


def _md(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _fmt_ns(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 1e6:
        return f"{v / 1e6:.2f} ms"
    if v >= 1e3:
        return f"{v / 1e3:.2f} µs"
    return f"{v:.0f} ns"


def slowdown_table(slow: dict[str, Any], key: str = "ratio") -> str:
    """Median slowdown [min..max] per configuration and workload; `key` picks wall time
    ("ratio") or the workload's CPU time ("cpu_ratio")."""
    workloads: list[str] = []
    for c in slow.values():
        for w in c["workloads"]:
            if w not in workloads:
                workloads.append(w)
    headers = ["configuration", *workloads]
    rows = []
    for name, c in slow.items():
        if c.get("down"):
            rows.append([name, *(["down: " + c["down"][:60]] + [""] * (len(workloads) - 1))])
            continue
        cells = [name]
        for w in workloads:
            d = c["workloads"].get(w) or {}
            s, r = d.get("ns_per_op"), d.get(key)
            if key == "cpu_ratio":
                cpu = summarize(d.get("raw_cpu_ns_per_op") or [])
                s = cpu.as_dict() if cpu else None
            if s is None:
                cells.append("-")
            elif r is None:
                cells.append(f"{_fmt_ns(s['median'])}/op")
            else:
                cells.append(f"{(r['median'] - 1) * 100:+.1f}% "
                             f"[{(r['low'] - 1) * 100:+.0f}..{(r['high'] - 1) * 100:+.0f}]")
        rows.append(cells)
    return _md(headers, rows)


def kernel_table(kc: dict[str, Any]) -> str:
    rows = []
    for r in sorted(kc.get("programs", []), key=lambda r: (r["owner"], r["program"])):
        rows.append([r["owner"], r["program"], f"{r['run_cnt']:,}",
                     f"{r['run_time_ns'] / 1e6:.1f}", _fmt_ns(r.get("ns_per_event"))])
    for p, why in (kc.get("peers_down") or {}).items():
        rows.append([p, "down", "", "", why[:80]])
    return _md(["owner", "program", "events", "run time ms", "ns/event"], rows)


def scale_table(scale: list[dict[str, Any]]) -> str:
    rows = []
    for r in scale:
        if r.get("error"):
            rows.append([str(r["cgroups"]), r["profile"], "error: " + r["error"][:60],
                         "", "", "", "", "", ""])
            continue
        fl = r.get("floor") or {}
        floor = (f"{fl['floor_cpu_per_cycle_s'] * 1e3:.1f} ms, {fl['opens_per_cycle']:,.0f} "
                 f"files: x{fl['ratio']:.1f}" if fl.get("ratio") else
                 ("error: " + str(fl["error"])[:40] if fl.get("error") else "-"))

        def ms(k: str, r: dict[str, Any] = r) -> str:
            v = r.get(k)
            return f"{v * 1e3:.1f}" if v is not None else "-"

        rows.append([f"{r['cgroups']:,}", r["profile"], ms("cpu_per_cycle_s"), floor,
                     ms("wall_per_cycle_s"), f"{(r.get('rss_kib') or 0) / 1024:.0f}",
                     f"{r.get('startup_s', 0):.2f}",
                     f"{r.get('series', 0):,}" + (f" ({r['overflow_series']:,} overflow)"
                                                  if r.get("overflow_series") else ""),
                     ", ".join(f"{k}={v:.0f}" for k, v in (r.get("map_entries") or {}).items()
                               if v)])
    return _md(["cgroups", "profile", "cycle CPU ms", "C floor of its files", "cycle wall ms",
                "RSS MiB",
                "start-up s", "series", "map entries read/cycle"], rows)


def maps_table(slow: dict[str, Any]) -> str:
    rows = []
    for c in slow.values():
        if c.get("kind") != "kpod":
            continue
        total = sum(int(m.get("bytes_memlock") or 0) for m in c.get("maps", []))
        rows.append([c["profile"], f"{len(c.get('maps', []))}", f"{total / 1e6:.2f}",
                     ", ".join(f"{m['name']} {int(m['bytes_memlock']) / 1e6:.2f}"
                               for m in sorted(c.get("maps", []),
                                               key=lambda m: -int(m.get("bytes_memlock") or 0))
                               [:5])])
    return _md(["profile", "maps", "memlock MB", "largest (MB)"], rows)


def startup_table(slow: dict[str, Any]) -> str:
    rows = []
    for c in slow.values():
        xs = sorted(c.get("startup_s") or [])
        if c.get("kind") != "kpod" or not xs:
            continue
        down = [f"{k}" for k, v in (c.get("collectors") or {}).items() if not v.get("up")]
        rows.append([c["profile"], f"{xs[len(xs) // 2]:.2f}", f"{xs[0]:.2f}..{xs[-1]:.2f}",
                     str(len(xs)), ", ".join(down) or "none"])
    return _md(["profile", "median s", "range s", "starts", "collectors down"], rows)


def targets_table(verdicts: list[Verdict]) -> str:
    return _md(["target", "status", "measured", "limit", "gap"],
               [[v.target, v.status.upper() if v.status == "missed" else v.status,
                 v.measured, v.limit, v.gap] for v in verdicts])


def export_table(export: dict[str, Any]) -> str:
    """Scrape and render figures from benchmarks/export_bench.py, when it ran."""
    rows_in = (export.get("result") or {}).get("rows") or []
    if not rows_in:
        why = export.get("skipped") or export.get("error") or export.get("stderr") or ""
        return f"not run: {why}" if export else ""
    rows = []
    for r in rows_in:
        rows.append([f"{r.get('lines', 0):,}", f"{r.get('series', 0):,}",
                     f"{r.get('render_s', 0) * 1e3:.0f}", f"{r.get('scrape_p50_ms', 0):.0f}",
                     f"{r.get('scrape_p99_ms', 0):.0f}", f"{(r.get('rss_hwm_kib') or 0) / 1024:.0f}"])
    return (_md(["sample lines", "series", "render ms", "scrape p50 ms (10 clients)",
                 "scrape p99 ms", "peak RSS MiB"], rows)
            + f"\n\n`{export.get('command', '')}` (benchmarks/export_bench.py; see docs/export.md)")


# -- plots ---------------------------------------------------------------------------


def plots(results: dict[str, Any], outdir: Path) -> list[str]:
    """Write PNGs; returns their file names (empty when matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []
    slow = results.get("slowdown") or {}
    cfgs = [n for n, c in slow.items() if c["kind"] != "baseline" and not c.get("down")]
    workloads = list(next(iter(slow.values()))["workloads"]) if slow else []
    if cfgs and workloads:
        fig, axes = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
        width = 0.8 / len(cfgs)
        one = {"median": 1, "low": 1, "high": 1}
        for ax, key, title in ((axes[0], "ratio", "wall time"),
                               (axes[1], "cpu_ratio", "CPU time of the workload")):
            for i, name in enumerate(cfgs):
                meds, lo, hi = [], [], []
                for w in workloads:
                    r = slow[name]["workloads"][w].get(key) or one
                    meds.append((r["median"] - 1) * 100)
                    lo.append((r["median"] - r["low"]) * 100)
                    hi.append((r["high"] - r["median"]) * 100)
                xs = [j + i * width for j in range(len(workloads))]
                ax.bar(xs, meds, width, yerr=[lo, hi], capsize=2, label=name)
            ax.axhline(0, color="black", linewidth=0.5)
            ax.set_ylabel("slowdown, % (median, range)")
            ax.set_title(f"Workload slowdown with the agent or a peer attached: {title}")
        axes[1].set_xticks([j + 0.4 - width / 2 for j in range(len(workloads))], workloads)
        axes[0].legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(outdir / "slowdown.png", dpi=110)
        plt.close(fig)
        made.append("slowdown.png")
    progs = [r for r in (results.get("kernel_cost") or {}).get("programs", [])
             if r.get("ns_per_event")]
    if progs:
        progs.sort(key=lambda r: r["ns_per_event"])
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(progs) + 1.2))
        colors = ["tab:blue" if r["owner"].startswith("kpod") else "tab:gray" for r in progs]
        ax.barh([f"{r['owner']}: {r['program']}" for r in progs],
                [r["ns_per_event"] for r in progs], color=colors)
        ax.set_xlabel("ns per event (run_time_ns / run_cnt)")
        ax.set_title("In-kernel cost per event (blue: kpod-metrics, grey: peers)")
        fig.tight_layout()
        fig.savefig(outdir / "kernel_ns_per_event.png", dpi=110)
        plt.close(fig)
        made.append("kernel_ns_per_event.png")
    scale = [r for r in results.get("scale") or [] if not r.get("error")]
    if scale:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
        for prof in sorted({r["profile"] for r in scale}):
            pts = sorted((r["cgroups"], r) for r in scale if r["profile"] == prof)
            xs = [n for n, _ in pts]
            a1.plot(xs, [(r.get("cpu_per_cycle_s") or 0) * 1e3 for _, r in pts], "o-",
                    label=prof)
            a2.plot(xs, [(r.get("rss_kib") or 0) / 1024 for _, r in pts], "o-", label=prof)
        a1.axhline(200, color="red", linestyle="--", linewidth=0.8, label="target 200 ms")
        a2.axhline(120, color="red", linestyle="--", linewidth=0.8, label="target 120 MiB")
        a1.set_yscale("log")
        for a, ylab in ((a1, "CPU per collection cycle, ms"), (a2, "agent RSS, MiB")):
            a.set_xscale("log")
            a.set_xlabel("cgroups")
            a.set_ylabel(ylab)
            a.legend(fontsize=7)
        fig.suptitle("Userspace cost vs number of cgroups")
        fig.tight_layout()
        fig.savefig(outdir / "scale.png", dpi=110)
        plt.close(fig)
        made.append("scale.png")
    kp = [c for c in slow.values() if c["kind"] == "kpod" and c.get("maps")]
    if kp:
        fig, ax = plt.subplots(figsize=(7, 4))
        names = sorted({m["name"] for c in kp for m in c["maps"]})
        bottoms = [0.0] * len(kp)
        for nm in names:
            vals = [sum(int(m["bytes_memlock"] or 0) for m in c["maps"] if m["name"] == nm) / 1e6
                    for c in kp]
            ax.bar([c["profile"] for c in kp], vals, bottom=bottoms, label=nm)
            bottoms = [b + v for b, v in zip(bottoms, vals, strict=True)]
        ax.axhline(8, color="red", linestyle="--", linewidth=0.8, label="target 8 MB")
        ax.set_ylabel("map memlock, MB")
        ax.legend(fontsize=6, ncol=2)
        ax.set_title("Kernel memory of the agent's maps (defaults)")
        fig.tight_layout()
        fig.savefig(outdir / "map_memory.png", dpi=110)
        plt.close(fig)
        made.append("map_memory.png")
    return made

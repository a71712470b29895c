"""The written report: the same tables the run prints, plus method and commands,
rendered into docs/performance.md so the document always matches the committed JSON."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.targets import Verdict

COMMANDS = """\
make bench          # full run: results in benchmarks/results/, rewrites this page
make bench-quick    # CI smoke test: tiny sizes, one round, results in a temp dir
# the same, by hand (root; the bench extra brings matplotlib and py-spy):
.venv/bin/python -m pip install -e '.[bench]'
.venv/bin/python -m benchmarks.run [--quick] [--rounds 7] [--sizes 10,100,1000,5000] \\
    [--profiles minimal,standard,comprehensive] [--skip slowdown,kernel,scale,export]
# what the harness runs for each configuration:
perf bench sched pipe -l 200000
benchmarks/helpers/syscalls 1000000          # getppid + read(/dev/zero) + close(-1)
benchmarks/helpers/tcploop rr 50000          # 64-byte TCP_NODELAY ping-pong, loopback
benchmarks/helpers/tcploop stream 1024       # 1 GiB one-way, 64 KiB writes
python -m kpodmetrics run --mode standalone --profile <p> --port <free> --poll-interval 2s
runqlat | syscount -L | tcpstates | tcprtt    # the peers, each until SIGINT"""


def tables(results: dict[str, Any], verdicts: list[Verdict]) -> str:
    parts = []
    if results.get("slowdown"):
        parts += ["## Workload slowdown, wall time (median over rounds [min..max])",
                  report.slowdown_table(results["slowdown"]),
                  "## Workload slowdown, CPU time of the workload (median [min..max])",
                  report.slowdown_table(results["slowdown"], "cpu_ratio")]
    if results.get("kernel_cost"):
        parts += ["## In-kernel cost per event", report.kernel_table(results["kernel_cost"])]
    if results.get("scale"):
        parts += ["## Userspace cost vs cgroups", report.scale_table(results["scale"])]
    if results.get("slowdown"):
        parts += ["## Start-up to first metrics (no extra cgroups)",
                  report.startup_table(results["slowdown"]),
                  "## Kernel memory of maps (defaults)", report.maps_table(results["slowdown"])]
    if results.get("export"):
        parts += ["## Export: render and scrape latency", report.export_table(results["export"])]
    parts += ["## Targets", report.targets_table(verdicts)]
    return "\n\n".join(parts)


def _closing(verdicts: list[Verdict]) -> str:
    lines = []
    for v in verdicts:
        if v.status != "met" and v.closing:
            lines.append(f"- **{v.target}** ({v.status}{', ' + v.gap if v.gap else ''}): "
                         f"{v.closing}")
    return "\n".join(lines) or "All targets met in this run."


def _hot_spots(results: dict[str, Any]) -> str:
    out = []
    for r in results.get("scale") or []:
        spy = r.get("pyspy")
        if not spy:
            continue
        out.append(f"py-spy, {r['cgroups']:,} cgroups, {r['profile']} "
                   f"({spy.get('samples', 0)} samples, {spy.get('idle_samples', 0)} idle):")
        if spy.get("error"):
            out.append(f"- error: {spy['error']}")
        for f in (spy.get("self") or [])[:10]:
            out.append(f"- {f['share_of_busy']:.1%} `{f['frame']}`")
    return "\n".join(out) or ("No userspace target was missed, so no profile was taken "
                              "(py-spy runs on the agent at 1,000 cgroups comprehensive when "
                              "the cycle CPU or RSS target is missed).")


def _down(results: dict[str, Any]) -> str:
    lines = []
    for name, c in (results.get("slowdown") or {}).items():
        if c.get("down"):
            lines.append(f"- `{name}`: {c['down']}")
        for col, st in (c.get("collectors") or {}).items():
            if not st.get("up"):
                why = "; ".join(d.get("reason", "") for d in st.get("down", [])) or "down"
                lines.append(f"- `{name}` collector `{col}`: {why}")
    for p, why in ((results.get("kernel_cost") or {}).get("peers_down") or {}).items():
        lines.append(f"- peer `{p}` (kernel cost phase): {why}")
    for k, v in (results.get("missing") or {}).items():
        for n, why in v.items():
            lines.append(f"- missing {k[:-1]} `{n}`: {why}")
    return "\n".join(dict.fromkeys(lines)) or "- none"


ANALYSIS = Path(__file__).resolve().parent / "analysis.md"


def write(results: dict[str, Any], verdicts: list[Verdict], outdir: Path, doc: Path) -> None:
    """Render the report; benchmarks/analysis.md (the written reading of the figures,
    kept by hand) is included when present."""
    rel = os.path.relpath(outdir, doc.parent)
    analysis = ANALYSIS.read_text().strip() if ANALYSIS.exists() else ""
    host = results.get("host", {})
    plots = "\n\n".join(f"![{p}]({rel}/{p})" for p in results.get("plots", []))
    s = results.get("settings", {})
    body = f"""# Performance: overhead and scale

Generated by `make bench` (benchmarks/run.py) at commit `{results.get('commit')}` on
{results.get('started')}; kernel {host.get('kernel')}, {host.get('cpus')} CPUs
({host.get('machine')}), Python {host.get('python')}. Raw data:
[`bench.json`]({rel}/bench.json). The machine is small and shared, so every figure is a
ratio or a median taken in the same run; run-to-run spread is shown in brackets.

## How it is measured

- **Slowdown.** Each of {s.get('rounds')} rounds runs every configuration once — baseline,
  the agent per profile (standalone mode, poll interval {s.get('poll_interval_s')} s,
  started fresh and waited for `/readyz`), each libbpf-tools peer — in a rotated order
  (reversed on odd rounds). A configuration's slowdown is the median over rounds of its
  cost per operation divided by the baseline's cost *in the same round*. Two costs are
  kept: wall time per operation as the workload reports it (the headline, as in the
  issue) and the workload's CPU time per operation (rusage of its processes): BPF
  programs run in the workload's context and count there, while time stolen by other
  tasks on this shared machine does not, so the CPU figure is the steadier one.
- **In-kernel cost.** The agent (comprehensive: all its programs) and all peers run
  side by side; BPF run-time statistics are switched on with `BPF_ENABLE_STATS` only
  while the workloads run (they switch off by themselves when the fd closes;
  `kernel.bpf_stats_enabled` is never flipped); ns/event = Δrun_time_ns / Δrun_cnt per
  program. Programs are attributed to their process through `/proc/<pid>/fdinfo`.
- **Userspace.** For {', '.join(str(x) for x in s.get('sizes', []))} real cgroups
  (empty, under `kpod-test-bench-*`, ten per parent like a pod with containers) each
  profile's agent runs at a {s.get('scale_poll_interval_s')} s interval while a helper
  thread keeps the agent's per-cgroup metric maps filled with one synthetic entry per
  cgroup (written by map id, key = cgroup id). Over {s.get('scale_cycles')}+ cycles:
  CPU = Δ(utime+stime) of the agent / Δcycles, wall = Δ of its own
  `kpod_collection_cycle_duration_seconds` sum / count, RSS = VmRSS at the end.
  1,000 cgroups stand in for the issue's "1,000 pods" (a real pod has 2-3 cgroups).
- **Start-up** = process start → first `/readyz` 200 (the first collection is done).
- **Kernel memory** = `bytes_memlock` of every map the agent holds (bpftool / fdinfo).

## Commands

```sh
{COMMANDS}
```

{tables(results, verdicts)}

## Plots

{plots or "(no plots: matplotlib missing)"}

{analysis}

## Where targets are missed, what would close them

{_closing(verdicts)}

## Hot spots

{_hot_spots(results)}

Kernel side: `bpftool prog profile` answers "not supported" here (this bpftool is not
built with its skeletons, and the profiler needs fentry/fexit, which this kernel lacks),
so kernel hot spots come from the per-program statistics above.

## Collectors, peers and workloads that were down in this run

{_down(results)}

"""
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(body)

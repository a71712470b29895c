"""`python -m benchmarks.run [--quick]`: every benchmark phase, then JSON, plots, tables.

Full mode (`make bench`) writes benchmarks/results/ and docs/performance.md. Quick mode
(`make bench-quick`, CI smoke test) uses tiny sizes and one round and writes to
$KPOD_BENCH_OUT or a temporary directory, so it never overwrites the committed report.
Whatever happens, every process started is stopped, every cgroup removed, and the run
fails if a BPF program it loaded is still loaded at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import (
    agent_rss,
    bpfinfo,
    cgroups,
    docs,
    kernelcost,
    peers,
    procs,
    report,
    scale,
    slowdown,
    soak,
    targets,
    workloads,
)
from kpodmetrics.config import PROFILES

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks.run", description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny sizes, one round (CI smoke test)")
    p.add_argument("--out", default=os.environ.get("KPOD_BENCH_OUT", ""),
                   help="results directory (default benchmarks/results; quick: a temp dir)")
    p.add_argument("--rounds", type=int, default=0, help="interleaved A/B rounds (default 7)")
    p.add_argument("--profiles", default=",".join(PROFILES))
    p.add_argument("--sizes", default="", help="cgroup counts for the scale phase")
    p.add_argument("--skip", default="",
                   help="phases to skip: slowdown,kernel,scale,rss,export,soak")
    p.add_argument("--soak-seconds", type=float, default=3600.0,
                   help="length of the soak phase (full mode only; docs/reliability.md)")
    p.add_argument("--no-docs", action="store_true", help="do not rewrite docs/performance.md")
    return p.parse_args(argv)


def _preflight() -> None:
    if os.geteuid() != 0:
        sys.exit("benchmarks need root (BPF, cgroups, BPF statistics); run as root")
    if not os.path.isdir("/sys/kernel/tracing/events"):
        subprocess.run(["mount", "-t", "tracefs", "tracefs", "/sys/kernel/tracing"],
                       check=False, capture_output=True)
    stale = cgroups.leftovers()
    for d in stale:  # only our own name pattern: a previous run that was killed hard
        print(f"removing stale benchmark cgroup {d}", file=sys.stderr)
        cgroups.remove(os.path.join(cgroups.cgroupfs.detect_root(None), d))


def _export_bench(out: Path, quick: bool) -> dict[str, Any]:
    """The export/scrape benchmark (benchmarks/export_bench.py, another module's), when it
    exists. Its output goes into our results as bench_export.json, never over its own
    committed export_*.json files."""
    script = ROOT / "benchmarks" / "export_bench.py"
    if not script.exists():
        return {"skipped": "benchmarks/export_bench.py not present"}
    args = [sys.executable, str(script)]
    helptext = subprocess.run([*args, "--help"], capture_output=True, text=True, cwd=ROOT,
                              timeout=60).stdout
    target = out / "bench_export.json"
    if "--out" not in helptext:
        return {"skipped": "export_bench.py has no --out option (would overwrite its results)"}
    args += ["--out", str(target)]
    if quick and "--sizes" in helptext:
        args += ["--sizes", "4000"]
    r = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=1800)
    found: dict[str, Any] = {"returncode": r.returncode,
                             "command": " ".join(args[1:]).replace(str(ROOT) + "/", "")}
    if r.returncode != 0:
        found["stderr"] = r.stderr.strip()[-500:]
    try:
        found["result"] = json.loads(target.read_text())
    except (OSError, ValueError) as exc:
        found["error"] = f"no result: {exc}"
    return found


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    """SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so every `finally` runs and
    no agent, peer or cgroup outlives the harness."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    _preflight()
    quick = a.quick
    out = Path(a.out) if a.out else (Path(tempfile.mkdtemp(prefix="kpod-bench-quick-"))
                                     if quick else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    profiles = [p for p in a.profiles.split(",") if p]
    rounds = a.rounds or (1 if quick else 7)
    sizes = ([int(x) for x in a.sizes.split(",") if x] if a.sizes
             else ([10, 100] if quick else [10, 100, 1000, 5000]))
    skip = set(a.skip.split(",")) - {""}
    poll = 0.5 if quick else 2.0
    scale_poll, scale_cycles = (0.5, 2) if quick else (1.0, 4)
    t_start = time.monotonic()
    progs_before = len(bpfinfo.programs())
    stats_before = bpfinfo.stats_sysctl_value()
    results: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"kernel": platform.release(), "cpus": os.cpu_count(),
                 "machine": platform.machine(), "python": platform.python_version()},
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True, cwd=ROOT).stdout.strip(),
        "logs": "",
        "settings": {"rounds": rounds, "profiles": profiles, "sizes": sizes,
                     "poll_interval_s": poll, "scale_poll_interval_s": scale_poll,
                     "scale_cycles": scale_cycles},
    }
    # process logs are diagnostics, not results: keep them out of the repository
    logdir = Path(tempfile.mkdtemp(prefix="kpod-bench-logs-"))
    reg = procs.Registry(logdir)
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="kpod-bench-bin-") as tmp:
        try:
            bins = workloads.build(Path(tmp))
            wls, missing_w = workloads.make(workloads.QUICK if quick else workloads.FULL, bins)
            found_peers, missing_p = peers.available()
            results["workloads"] = {w.name: w.unit for w in wls}
            results["missing"] = {"workloads": missing_w, "peers": missing_p}
            results["workload_sizes"] = asdict(workloads.QUICK if quick else workloads.FULL)
            if "slowdown" not in skip:
                print("== workload slowdown (interleaved rounds)", file=sys.stderr)
                cfgs = slowdown.configs(profiles, found_peers)
                slowdown.run(reg, cfgs, wls, rounds, poll)
                results["slowdown"] = slowdown.results(cfgs, wls)
            if "kernel" not in skip:
                print("== in-kernel cost per event", file=sys.stderr)
                results["kernel_cost"] = kernelcost.run(reg, found_peers, wls, poll)
            if "scale" not in skip:
                print("== userspace cost vs cgroups", file=sys.stderr)

                def want_profile(profile: str, n: int, row: dict[str, Any]) -> bool:
                    if quick or profile != "standard" or n != targets.TARGET_CGROUPS:
                        return False
                    ratio = (row.get("floor") or {}).get("ratio") or 0
                    rss = (row.get("rss_kib") or 0) / 1024
                    return bool(ratio > targets.FLOOR_RATIO or rss > targets.RSS_MIB)

                results["scale"] = scale.run(reg, sizes, profiles, scale_poll, scale_cycles,
                                             out, want_profile,
                                             floor_binary=bins.get("filefloor"))
            if "rss" not in skip:
                print("== resident memory: standalone idle, Kubernetes mode with "
                      f"{targets.K8S_PODS} pods", file=sys.stderr)
                results["rss"] = (agent_rss.measure(10, n_cycles=2) if quick
                                  else agent_rss.measure(targets.K8S_PODS))
            if "export" not in skip:
                results["export"] = _export_bench(out, quick)
            if not quick and "soak" not in skip:
                print(f"== soak: {a.soak_seconds:.0f}s at a 1 s interval", file=sys.stderr)
                results["soak"] = soak.run(reg, a.soak_seconds)
                if not all(results["soak"]["verdict"][k] for k in ("rss_ok", "cycles_ok",
                                                                    "age_ok")):
                    failures.append(f"soak: {results['soak']['verdict']}")
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
            import traceback

            traceback.print_exc()
        finally:
            reg.stop_all()
    kpod = [c for c in (results.get("slowdown") or {}).values() if c["kind"] == "kpod"]
    if kpod and all(c["down"] for c in kpod):
        failures.append("the agent did not run in any profile: " + kpod[0]["down"][:300])
    leaked = reg.leaked_programs()
    if leaked:
        failures.append(f"BPF programs still loaded after stop: {leaked}")
    if cgroups.leftovers():
        failures.append(f"benchmark cgroups left behind: {cgroups.leftovers()}")
    if bpfinfo.stats_sysctl_value() != stats_before:
        failures.append("kernel.bpf_stats_enabled changed by the run")
    results["logs"] = str(logdir)
    results["agent_start_failures"] = reg.agent_failures
    results["cleanup"] = {"programs_loaded_before": progs_before,
                          "programs_loaded_after": len(bpfinfo.programs()),
                          "our_programs_seen": len(reg.seen_prog_ids), "leaked": leaked,
                          "bpf_stats_enabled_before_after": [stats_before,
                                                             bpfinfo.stats_sysctl_value()]}
    verdicts = targets.evaluate(results)
    results["targets"] = [v.as_dict() for v in verdicts]
    results["failures"] = failures
    results["duration_s"] = time.monotonic() - t_start
    name = "bench_quick.json" if quick else "bench.json"
    made = report.plots(results, out)
    results["plots"] = made
    (out / name).write_text(json.dumps(results, indent=1, default=str) + "\n")
    text = docs.tables(results, verdicts)
    print(text)
    if not made:
        print("(plots skipped: matplotlib missing; pip install -e '.[bench]')", file=sys.stderr)
    if not quick and not a.no_docs:
        docs.write(results, verdicts, out, ROOT / "docs" / "performance.md")
    print(f"\nresults: {out / name}  ({results['duration_s']:.0f}s)", file=sys.stderr)
    for f in failures:
        print(f"FAILED: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

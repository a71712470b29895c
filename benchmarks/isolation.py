"""`python -m benchmarks.isolation`: CPU per cycle of the per-collector deadlines (asyncio
task per collector, shared worker, lanes.py) against the serial loop they replaced.

Both agents are today's code on the same cgroups and the same filled BPF maps; the
"serial" one has `Agent.collect_once` swapped for the loop of before (every collector
one after another inside one `asyncio.to_thread`, docs/reliability.md), so the only
difference measured is the scheduling. Rounds alternate the order (A/B, B/A, ...) so
that drift of a shared machine lands on both. Prints and writes JSON with the CPU
seconds per cycle of each window and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import bpfinfo, cgroups, mapfill, procs, scale

SERIAL = ("-c", "from benchmarks.isolation import serial_main; serial_main()")


async def _serial_collect_once(self: Any) -> None:
    """The collection cycle as it was before per-collector deadlines (for comparison)."""
    from kpodmetrics.collectors.base import CollectContext

    async with self._cycle_lock:
        t0 = time.monotonic()
        resolver = self.resolver
        await asyncio.to_thread(resolver.refresh)
        ctx = CollectContext(targets=resolver.targets(), cgroup_root=self.cgroup_root,
                             proc_root=self.settings.proc_root)
        live = [s for s in self.slots if s.collector is not None]
        results = await asyncio.to_thread(lambda: [self._run_collector(s, ctx) for s in live])
        samples = [x for r in results for x in r]
        stats = await asyncio.to_thread(self.store.apply, samples, resolver)
        await asyncio.to_thread(self._fold_self_metrics, ctx, stats, time.monotonic() - t0)
        body = await asyncio.to_thread(self.pipeline.render)
        await asyncio.to_thread(self.exposition.set, body)
        self.pipeline.push()
        self.cycles += 1
        self.last_cycle_at = time.monotonic()
        if self.first_metrics_at is None:
            self.first_metrics_at = self.last_cycle_at


def serial_main() -> None:
    """Entry point of the "serial" agent: today's agent with the old cycle."""
    from kpodmetrics import cli, service

    service.Agent.collect_once = _serial_collect_once  # type: ignore[method-assign]
    sys.exit(cli.main(sys.argv[1:]))


def _measure(reg: procs.Registry, cg: cgroups.BenchCgroups, variant: str, profile: str,
             poll: float, cycles: int) -> dict[str, object]:
    launcher = SERIAL if variant == "serial" else ("-m", "kpodmetrics")
    agent = procs.Agent(reg, profile, poll, tag=f"-{variant}", launcher=launcher)
    try:
        agent.wait_ready()
        s = agent.scrape()
        metric_maps = set(s.by_label("kpod_bpf_map_capacity", "map"))
        targets = mapfill.choose(bpfinfo.maps(), agent.m.bpf.map_ids, metric_maps)
        with mapfill.Filler(targets, cg.ids, period=max(poll / 4, 0.05)):
            time.sleep(poll * 2)  # warm-up: the tree walk and the first full maps
            row = scale._window(agent, cycles, poll)
    finally:
        agent.stop()
    return {"variant": variant, **{k: row[k] for k in ("cycles", "cpu_s", "cpu_per_cycle_s",
                                                        "wall_per_cycle_s", "rss_kib")}}


def summary(rows: list[dict[str, object]]) -> dict[str, object]:
    """Medians per variant, and the ratio tasks/serial of each round: the two windows
    of a round ran back to back, so a shared machine's load swings (here CPU per cycle
    moved 5x between rounds) cancel out in the paired ratio and not in the medians."""
    def cpu(r: int, v: str) -> float:
        return next(float(x["cpu_per_cycle_s"] or 0) for x in rows
                    if x["round"] == r and x["variant"] == v)

    med = {v: statistics.median(float(x["cpu_per_cycle_s"] or 0) for x in rows
                                if x["variant"] == v) for v in ("serial", "tasks")}
    paired = [cpu(r, "tasks") / cpu(r, "serial") for r in sorted({int(str(x["round"]))
                                                                   for x in rows})]
    return {"median_cpu_per_cycle_s": med,
            "ratio_of_medians_tasks_over_serial": med["tasks"] / med["serial"],
            "paired_ratios_tasks_over_serial": paired,
            "median_paired_ratio": statistics.median(paired)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.isolation", description=__doc__)
    p.add_argument("--cgroups", type=int, default=1000)
    p.add_argument("--profile", default="comprehensive")
    p.add_argument("--poll", type=float, default=2.0)
    p.add_argument("--cycles", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results/isolation.json")
    a = p.parse_args(argv)
    reg = procs.Registry(Path(tempfile.mkdtemp(prefix="kpod-bench-isolation-")))
    rows: list[dict[str, object]] = []
    try:
        with cgroups.created(a.cgroups) as cg:
            for r in range(a.rounds):
                order = ("serial", "tasks") if r % 2 == 0 else ("tasks", "serial")
                for variant in order:
                    row = _measure(reg, cg, variant, a.profile, a.poll, a.cycles)
                    rows.append({"round": r, **row})
                    print(f"round {r} {variant:<6} cpu/cycle="
                          f"{float(row['cpu_per_cycle_s'] or 0) * 1e3:7.1f} ms", file=sys.stderr)
    finally:
        reg.stop_all()
    result = {"cgroups": a.cgroups, "profile": a.profile, "poll_s": a.poll,
              "cycles_per_window": a.cycles, "rows": rows, **summary(rows),
              "leaked_programs": reg.leaked_programs()}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))
    return 0 if not result["leaked_programs"] else 1


if __name__ == "__main__":
    sys.exit(main())

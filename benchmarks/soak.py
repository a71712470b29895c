"""Soak: the agent at a 1 s interval for an hour (`make bench`; not in `make test`).

Every minute: RSS, CPU seconds, cycles completed, age of the last cycle, collector
timeouts. The verdict asks for what a long run can show and a short one cannot:
memory that does not creep (the growth over the second half, after start-up and
allocator arenas settled, within `RSS_CREEP_KIB`), cycles kept at the interval (at
least 95 % of the wall time in cycles), no cycle ever stale (age under 3 intervals).
`python -m benchmarks.soak --seconds 120` for a short try.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import procs

RSS_CREEP_KIB = 8 * 1024


def run(reg: procs.Registry, seconds: float, poll: float = 1.0, profile: str = "standard",
        every: float = 60.0) -> dict[str, Any]:
    agent = procs.start_agent(reg, profile, poll, tag="-soak")
    points: list[dict[str, float]] = []
    try:
        t0 = time.monotonic()
        c0 = procs.cpu_seconds(agent.pid)
        n0, _ = agent.cycles(agent.scrape())
        while True:
            s = agent.scrape()
            now = time.monotonic() - t0
            points.append({
                "t_s": now,
                "rss_kib": float(procs.memory_kib(agent.pid).get("VmRSS") or 0),
                "cpu_s": procs.cpu_seconds(agent.pid) - c0,
                "cycles": agent.cycles(s)[0] - n0,
                "age_s": s.value("kpod_last_cycle_age_seconds") or 0.0,
                "timeouts": sum(s.by_label("kpod_collector_timeouts_total",
                                           "collector").values()),
            })
            if now >= seconds:
                break
            time.sleep(min(every, max(0.0, seconds - now)))
    finally:
        agent.stop()
    half = [p for p in points if p["t_s"] >= points[-1]["t_s"] / 2]
    creep = half[-1]["rss_kib"] - half[0]["rss_kib"]
    last = points[-1]
    verdict = {
        "rss_creep_second_half_kib": creep,
        "rss_ok": creep <= RSS_CREEP_KIB,
        "cycles_per_interval": last["cycles"] * poll / last["t_s"] if last["t_s"] else 0.0,
        "max_age_s": max(p["age_s"] for p in points),
        "cpu_per_cycle_s": last["cpu_s"] / last["cycles"] if last["cycles"] else None,
        "timeouts": last["timeouts"],
    }
    verdict["cycles_ok"] = verdict["cycles_per_interval"] >= 0.95
    verdict["age_ok"] = verdict["max_age_s"] < 3 * poll
    return {"seconds": seconds, "poll_s": poll, "profile": profile, "points": points,
            "verdict": verdict}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.soak", description=__doc__)
    p.add_argument("--seconds", type=float, default=3600.0)
    p.add_argument("--every", type=float, default=60.0)
    p.add_argument("--out", default="")
    a = p.parse_args(argv)
    reg = procs.Registry(Path(tempfile.mkdtemp(prefix="kpod-bench-soak-")))
    try:
        result = run(reg, a.seconds, every=min(a.every, a.seconds / 4))
    finally:
        reg.stop_all()
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["verdict"], indent=1))
    v = result["verdict"]
    return 0 if v["rss_ok"] and v["cycles_ok"] and v["age_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

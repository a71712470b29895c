"""Userspace cost of the agent as the number of cgroups grows.

For each size, real cgroups are created once; for each profile an agent starts
(start-up to first metrics is timed at that size), its metric maps are kept filled with
one synthetic entry per cgroup, and over a window of cycles we take the agent's CPU
time (/proc/<pid>/stat), its own cycle histogram and collector durations, and RSS.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import bpfinfo, cgroups, floor, mapfill, procs


def _window(agent: procs.Agent, cycles: int, poll: float) -> dict[str, object]:
    s0 = agent.scrape()
    c0 = procs.cpu_seconds(agent.pid)
    t0 = time.monotonic()
    n0, sum0 = agent.cycles(s0)
    # CPU accrues continuously but cycles are counted whole: wait for `cycles` complete
    # cycles, pacing by the agent's own mean cycle time when cycles outlast the interval
    step = max(poll, sum0 / n0 if n0 else poll)
    time.sleep(cycles * step + poll / 2)
    deadline = time.monotonic() + 90
    while True:
        s1 = agent.scrape()
        c1 = procs.cpu_seconds(agent.pid)
        t1 = time.monotonic()
        n1, sum1 = agent.cycles(s1)
        if n1 - n0 >= cycles or time.monotonic() > deadline:
            break
        time.sleep(step)
    n = n1 - n0
    mem = procs.memory_kib(agent.pid)
    return {
        "cycles": n,
        "window_s": t1 - t0,
        "cpu_s": c1 - c0,
        "cpu_per_cycle_s": (c1 - c0) / n if n else None,
        "wall_per_cycle_s": (sum1 - sum0) / n if n else None,
        "rss_kib": mem.get("VmRSS"),
        "peak_rss_kib": mem.get("VmHWM"),
        "series": s1.series,
        # the agent's cardinality budget folds series beyond it into __overflow__ ones
        "overflow_series": sum(1 for v in s1.samples.values() for lab, _ in v
                               if any(x == "__overflow__" for _, x in lab)),
        "exposition_bytes": len(s1.text.encode()),
        "collector_s": s1.by_label("kpod_collector_duration_seconds", "collector"),
        "map_entries": s1.by_label("kpod_bpf_map_entries", "map"),
        "map_update_errors": s1.by_label("kpod_bpf_map_update_errors_total", "map"),
        "collectors_down": sorted(c for c, v in
                                  s1.by_label("kpod_collector_up", "collector").items() if not v),
    }


def pyspy(pid: int, out: Path, seconds: int = 10) -> dict[str, object]:
    """Sample the agent with py-spy; returns the top functions by own and total time."""
    exe = Path(sys.executable).parent / "py-spy"
    if not exe.exists():
        return {"error": "py-spy not installed (pip install -e '.[bench]')"}
    raw = out.with_suffix(".txt")
    r = subprocess.run([str(exe), "record", "--pid", str(pid), "--duration", str(seconds),
                        "--rate", "200", "--nonblocking", "--format", "raw", "--output", str(raw)],
                       capture_output=True, text=True, timeout=seconds + 60)
    if r.returncode != 0 or not raw.exists():
        return {"error": (r.stderr or r.stdout).strip()[-300:]}
    return {"raw": raw.name, **hot_spots(raw.read_text())}


def hot_spots(collapsed: str, top: int = 15) -> dict[str, object]:
    """Collapsed stacks ('a;b;c 12') -> top frames by self and by inclusive samples.

    Idle waiting (epoll, thread pool queue get, sleeps) is counted separately so that
    the lists show where CPU goes, not where threads park.
    """
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = idle = 0
    idle_words = ("select (selectors.py", "_worker (concurrent/futures/thread.py",
                  "wait (threading.py", "_run_once (asyncio", "get (queue.py")
    for line in collapsed.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        frames = stack.split(";")
        total += count
        leaf = frames[-1]
        if any(w in leaf for w in idle_words):
            idle += count
            continue
        own[leaf] = own.get(leaf, 0) + count
        for f in set(frames):
            incl[f] = incl.get(f, 0) + count
    busy = max(total - idle, 1)

    def rank(d: dict[str, int]) -> list[dict[str, object]]:
        return [{"frame": f, "samples": c, "share_of_busy": c / busy}
                for f, c in sorted(d.items(), key=lambda kv: -kv[1])[:top]]

    return {"samples": total, "idle_samples": idle, "self": rank(own), "inclusive": rank(incl)}


def run(reg: procs.Registry, sizes: list[int], profiles: list[str], poll: float, cycles: int,
        outdir: Path, profile_if: Callable[[str, int, dict[str, object]], bool] | None = None,
        floor_binary: str | None = None, floor_max_cgroups: int = 1000,
        floor_profile: str = "standard") -> list[dict[str, object]]:
    """One row per size and profile; with `floor_binary` (benchmarks/helpers/filefloor)
    the `floor_profile` rows up to `floor_max_cgroups` also carry the C floor of their
    cycle (floor.py: strace and a replay, so only where the target is judged)."""
    rows: list[dict[str, object]] = []
    for n in sizes:
        t0 = time.monotonic()
        with cgroups.created(n) as cg:
            made = time.monotonic() - t0
            for profile in profiles:
                row: dict[str, object] = {"cgroups": len(cg.ids), "profile": profile,
                                          "create_s": made}
                try:
                    agent = procs.start_agent(reg, profile, poll, tag=f"-scale{n}")
                except procs.AgentDown as exc:
                    row["error"] = str(exc)
                    rows.append(row)
                    continue
                try:
                    row["startup_s"] = agent.startup_s
                    s = agent.scrape()
                    metric_maps = set(s.by_label("kpod_bpf_map_capacity", "map"))
                    targets = mapfill.choose(bpfinfo.maps(), agent.m.bpf.map_ids, metric_maps)
                    with mapfill.Filler(targets, cg.ids, period=max(poll / 4, 0.05)) as filler:
                        time.sleep(poll * 2)  # warm-up: the tree walk and the first full maps
                        row.update(_window(agent, cycles, poll))
                        row["filled_maps"] = filler.entries
                        row["fill_errors"] = filler.errors
                        if floor_binary and n <= floor_max_cgroups and \
                                profile == floor_profile:
                            cpu = row.get("cpu_per_cycle_s")
                            row["floor"] = floor.measure(
                                agent, floor_binary, cpu if isinstance(cpu, float) else None)
                        if profile_if is not None and profile_if(profile, n, row):
                            print(f"  py-spy on the agent at {n} cgroups, {profile}",
                                  file=sys.stderr)
                            row["pyspy"] = pyspy(agent.pid,
                                                 outdir / f"pyspy_{profile}_{n}.svg")
                except procs.AgentDown as exc:
                    row["error"] = str(exc)
                finally:
                    agent.stop()
                rows.append(row)
                cpu = row.get("cpu_per_cycle_s")
                cpu_ms = cpu * 1e3 if isinstance(cpu, float) else 0.0
                fl = row.get("floor")
                ratio = fl.get("ratio") if isinstance(fl, dict) else None
                print(f"  scale {n:>5} cgroups {profile:<13} cpu/cycle="
                      f"{cpu_ms:7.1f} ms rss={row.get('rss_kib', 0) or 0:>7} KiB"
                      + (f" floor x{ratio:.2f}" if ratio else ""), file=sys.stderr)
    return rows

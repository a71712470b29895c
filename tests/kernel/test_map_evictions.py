"""A full LRU metric map evicts silently; the collector must say so (and only then)."""

from __future__ import annotations

import subprocess
import time

import pytest

from kpodmetrics.collectors.ebpf.runqueue import CpuSchedCollector
from tests.conftest import require_root
from tests.kernel.cgroup_util import build_helper, make_cgroups, spawn_in

SLEEPERS = 16


def run_sleepers(collector: CpuSchedCollector) -> None:
    """16 cgroups each with a 1 ms sleeper for 0.5 s, read every 100 ms."""
    exe = build_helper("workload")
    with make_cgroups(*(f"c{i}" for i in range(SLEEPERS))) as cgs:
        procs = [spawn_in(cg, [exe, "sleep", "500"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE) for cg in cgs]
        for p in procs:
            assert p.stdout is not None and p.stdout.readline() == b"ready\n"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(b"g")
            p.stdin.flush()
        for _ in range(6):
            time.sleep(0.1)
            collector.read_map("cpu_stats")
        for p in procs:
            p.kill()
            p.wait()
        collector.read_map("cpu_stats")


def health(collector: CpuSchedCollector) -> tuple[int, int, int]:
    (h,) = [h for h in collector.map_health() if h.map == "cpu_stats"]
    return h.evicted_at_least, h.capacity, h.entries_written


@pytest.mark.kernel
def test_evictions_of_a_too_small_map_are_reported(started_collectors) -> None:  # type: ignore[no-untyped-def]
    require_root()
    small = started_collectors(CpuSchedCollector, max_entries={"cpu_stats": 8})
    run_sleepers(small)
    evicted, capacity, written = health(small)
    assert capacity == 8
    # 16 busy cgroups (and the host's own) cannot fit in 8 entries between reads
    assert evicted > 0
    assert evicted <= written


@pytest.mark.kernel
def test_a_map_with_room_reports_no_evictions(started_collectors) -> None:  # type: ignore[no-untyped-def]
    require_root()
    roomy = started_collectors(CpuSchedCollector)
    run_sleepers(roomy)
    evicted, capacity, written = health(roomy)
    assert capacity == 4096 and written >= SLEEPERS
    assert evicted == 0

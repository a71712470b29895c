"""Per-event cost of the syscall programs, from the kernel's own BPF run-time stats.

Run-time stats are switched on with bpf_enable_stats (on only while we hold the fd,
so the global setting is restored even if the test dies) and read from
/proc/self/fdinfo of each program (run_time_ns, run_cnt). A getppid storm measures
the untracked path (default filter) and the tracked path (filter = getppid).
Prints the figures (run with -s); docs/mem-syscalls.md records them. The bounds
are loose on purpose: they catch a path that got an order of magnitude slower
(e.g. a hash lookup for untracked syscalls), not noise.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from kpodmetrics import syscalls
from kpodmetrics.bpf import libbpf
from kpodmetrics.collectors.ebpf.syscalls import SyscallCollector
from kpodmetrics.config import DEFAULT_SYSCALLS
from tests.bpf_owned import prog_stats
from tests.conftest import require_root
from tests.kernel.cgroup_util import build_helper, make_cgroups, spawn_in

STORM = 2_000_000



def storm_seconds(exe: str) -> float:
    with make_cgroups("storm") as (cg,):
        p = spawn_in(cg, [exe, "storm", str(STORM)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert p.stdin is not None and p.stdout is not None
        assert p.stdout.readline() == b"ready\n"
        t0 = time.perf_counter()
        p.stdin.write(b"g")
        p.stdin.flush()
        assert p.stdout.readline().startswith(b"done")
        elapsed = time.perf_counter() - t0
        p.kill()
        p.wait()
    return elapsed


def measure(exe: str, tracked: dict[str, int]) -> tuple[dict[str, float], float]:
    """ns per program run for each program, and wall ns per getppid call."""
    c = SyscallCollector(tracked)
    c.start()
    try:
        fds = c.program_fds()
        before = {n: prog_stats(fd) for n, fd in fds.items()}
        wall = storm_seconds(exe)
        after = {n: prog_stats(fd) for n, fd in fds.items()}
    finally:
        c.close()
    per_event = {}
    for n in fds:
        dt, dc = after[n][0] - before[n][0], after[n][1] - before[n][1]
        assert dc >= STORM, f"{n} ran {dc} times for {STORM} calls"
        per_event[n] = dt / dc
    return per_event, wall * 1e9 / STORM


@pytest.mark.kernel
def test_per_event_cost() -> None:
    require_root()
    exe = build_helper("sys_calls")
    stats_fd = int(libbpf.lib().bpf_enable_stats(libbpf.BPF_STATS_RUN_TIME))
    assert stats_fd >= 0, f"bpf_enable_stats: {libbpf.strerror(stats_fd)}"
    try:
        bare = min(storm_seconds(exe) for _ in range(3)) * 1e9 / STORM
        untracked, wall_u = measure(exe, syscalls.resolve(DEFAULT_SYSCALLS))
        tracked, wall_t = measure(exe, syscalls.resolve(["getppid"]))
    finally:
        os.close(stats_fd)
    print(f"\ngetppid wall time: {bare:.0f} ns bare, {wall_u:.0f} ns untracked, "
          f"{wall_t:.0f} ns tracked")
    for label, d in (("untracked", untracked), ("tracked", tracked)):
        print(f"{label}: " + ", ".join(f"{n} {v:.1f} ns/event" for n, v in sorted(d.items())))
    assert untracked["kpod_sys_enter"] < 150 and untracked["kpod_sys_exit"] < 250
    assert tracked["kpod_sys_enter"] < 1000 and tracked["kpod_sys_exit"] < 2000

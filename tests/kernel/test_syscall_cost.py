"""Per-event cost of the syscall programs, from the kernel's own BPF run-time stats.

Run-time stats are switched on with bpf_enable_stats (on only while we hold the fd,
so the global setting is restored even if the test dies) and read from
/proc/self/fdinfo of each program (run_time_ns, run_cnt). A getppid storm measures
the untracked path (default filter) and the tracked path (filter = getppid).
Prints the figures (run with -s); docs/mem-syscalls.md records them. The bounds
are in units of a bare getppid call timed in the same run (cost_util: the VMs run
8x slower than the host) and loose on purpose: they catch a path that got an order of
magnitude slower (e.g. a hash lookup for untracked syscalls), not noise.
"""

from __future__ import annotations

import os

import pytest

from kpodmetrics import syscalls
from kpodmetrics.bpf import libbpf
from kpodmetrics.collectors.ebpf.syscalls import SyscallCollector
from kpodmetrics.config import DEFAULT_SYSCALLS
from tests.bpf_owned import prog_stats
from tests.conftest import require_root
from tests.kernel.cgroup_util import build_helper
from tests.kernel.cost_util import STORM, storm_seconds, syscall_unit_ns


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
        bare = syscall_unit_ns()
        untracked, wall_u = measure(exe, syscalls.resolve(DEFAULT_SYSCALLS))
        tracked, wall_t = measure(exe, syscalls.resolve(["getppid"]))
    finally:
        os.close(stats_fd)
    print(f"\ngetppid wall time: {bare:.0f} ns bare, {wall_u:.0f} ns untracked, "
          f"{wall_t:.0f} ns tracked")
    for label, d in (("untracked", untracked), ("tracked", tracked)):
        print(f"{label}: " + ", ".join(f"{n} {v:.1f} ns/event" for n, v in sorted(d.items())))
    # in units of the bare call (host: 0.3/0.4 untracked, 0.6/1.2 tracked; 6.1 under
    # TCG 0.3/0.5, 1.7/2.5; 5.10's hash variant 0.2/0.4, 3.0/3.6)
    for label, d, enter_max, exit_max in (("untracked", untracked, 1.25, 2.0),
                                          ("tracked", tracked, 8.0, 16.0)):
        enter, exit_ = by_role(d)
        assert enter < enter_max * bare, f"{label} enter: {enter:.0f} ns, bare call {bare:.0f}"
        assert exit_ < exit_max * bare, f"{label} exit: {exit_:.0f} ns, bare call {bare:.0f}"


def by_role(per_program: dict[str, float]) -> tuple[float, float]:
    """(enter, exit) ns/event whichever variant ran (kpod_sys_enter, or on 5.10
    kpod_sys_enter_hash, ...)."""
    (enter,) = [v for n, v in per_program.items() if n.startswith("kpod_sys_enter")]
    (exit_,) = [v for n, v in per_program.items() if n.startswith("kpod_sys_exit")]
    return enter, exit_

"""A unit of this machine's speed for the BPF cost tests: one bare getppid call.

Costs measured from BPF run-time stats scale with the CPU that runs them: the same
program takes 8x longer under QEMU TCG (the kernel matrix) than on the host. Bounds
expressed in nanoseconds therefore fail in the VMs or are too loose on the host; the
cost tests instead bound each program in units of a plain syscall round trip timed in
the same run (host 121 ns, 6.1 under TCG 955 ns, 5.10 under TCG 897 ns).
"""

from __future__ import annotations

import subprocess
import time

from tests.kernel.cgroup_util import build_helper, make_cgroups, spawn_in

STORM = 2_000_000


def storm_seconds(exe: str, calls: int = STORM) -> float:
    """Wall seconds of `calls` getppid calls by the sys_calls helper in a fresh cgroup."""
    with make_cgroups("storm") as (cg,):
        p = spawn_in(cg, [exe, "storm", str(calls)], stdin=subprocess.PIPE,
                     stdout=subprocess.PIPE)
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


def syscall_unit_ns(runs: int = 3) -> float:
    """ns of one getppid call with nothing of ours attached (the best of `runs`; call
    it before loading the programs under test)."""
    exe = build_helper("sys_calls")
    return min(storm_seconds(exe) for _ in range(runs)) * 1e9 / STORM

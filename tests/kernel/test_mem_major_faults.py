"""Major page faults per cgroup against the faulting process's own majflt.

A helper in a test cgroup drops the page cache of a file the test wrote (fadvise
DONTNEED on that file only, nothing global), maps it and reads one byte per page
with MADV_RANDOM. The counter of its cgroup must equal the growth of majflt in
/proc/<pid>/stat (field 12) over the same window, exactly: both are bumped in the
same kernel function for user-mode faults, and the helper makes no GUP accesses
(the one kind of major fault counted in majflt without a perf event). An idle
cgroup stays absent. Also checks that closing the collector leaves no perf fd.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile

import pytest

from kpodmetrics.bpf import libbpf
from kpodmetrics.bpf.maps import u64_key
from kpodmetrics.bpf.structs import KpodMemStats
from kpodmetrics.collectors.ebpf.mem_events import FAULT_PROG, MemCollector, online_cpus
from tests.bpf_owned import prog_stats
from tests.conftest import require_root
from tests.kernel.cgroup_util import build_helper, make_cgroups, spawn_in

PAGES = 2048


def majflt(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        text = fh.read()
    return int(text[text.rindex(")") + 2 :].split()[9])  # field 12: majflt



def perf_fds() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            n += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[perf_event]"
    return n


def fault_dir() -> str:
    """Where the faulted file lives: the kernel VMs' scratch disk, else /var/tmp."""
    return os.environ.get("VM_SCRATCH") or "/var/tmp"


@pytest.mark.kernel
@pytest.mark.parametrize("legacy", [False, True], ids=["batch", "legacy"])
def test_major_faults_equal_majflt_of_the_process(legacy: bool) -> None:
    require_root()
    exe = build_helper("mem_fault")
    fds_before = perf_fds()
    c = MemCollector(legacy_maps=legacy)
    c.start()
    stats_fd = int(libbpf.lib().bpf_enable_stats(libbpf.BPF_STATS_RUN_TIME))
    prog_fd = c.program_fds()[FAULT_PROG]
    run0 = prog_stats(prog_fd)
    status = {p.program: p for p in c.programs()}
    assert status[FAULT_PROG].attached, status[FAULT_PROG].reason
    assert perf_fds() - fds_before == len(online_cpus()), "one perf event per online CPU"
    try:
        with tempfile.NamedTemporaryFile(dir=fault_dir(), prefix="kpod-test-") as f, \
                make_cgroups("faulter", "idle") as (faulter, idle):
            f.write(os.urandom(PAGES * os.sysconf("SC_PAGESIZE")))
            f.flush()
            os.fsync(f.fileno())
            p = spawn_in(faulter, [exe, f.name], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            q = spawn_in(idle, [build_helper("sys_calls"), "idle"], stdout=subprocess.PIPE)
            assert p.stdout is not None and p.stdin is not None and q.stdout is not None
            assert p.stdout.readline() == b"ready\n"
            assert q.stdout.readline() == b"ready\n"
            c.read_map("mem_stats")  # from zero
            base = majflt(p.pid)
            p.stdin.write(b"g")
            p.stdin.flush()
            assert p.stdout.readline().startswith(b"done")
            want = majflt(p.pid) - base
            run1 = prog_stats(prog_fd)
            got = {u64_key(k): KpodMemStats.from_buffer_copy(v)
                   for k, v in c.read_map("mem_stats").items()}
            for proc in (p, q):
                proc.kill()
                proc.wait()
    finally:
        c.close()
        if stats_fd >= 0:
            os.close(stats_fd)
    runs = run1[1] - run0[1]
    assert want >= PAGES // 2, (
        f"the page cache drop made {want} major faults of {PAGES} pages: {fault_dir()} must be "
        "on a block device (tmpfs, 9p and overlays of them have no major faults)")
    assert faulter.id in got, "no entry for the faulting cgroup"
    print(f"\nmajor faults: /proc majflt delta={want}, kernel counter={got[faulter.id].major_faults}"
          f"; {FAULT_PROG}: {(run1[0] - run0[0]) / max(runs, 1):.1f} ns/event over {runs} runs")
    assert got[faulter.id].major_faults == want
    assert runs >= want, "the program ran once per major fault (at least)"
    assert got[faulter.id].oom_kills == 0
    assert idle.id not in got
    assert perf_fds() == fds_before, "closing must release every perf event fd"

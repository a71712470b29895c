"""PSI per cgroup on pure cgroup v2: cpu, memory and io pressure advance under a
workload that must stall on that resource, and the pressure collector exports the
kernel's totals.

- cpu: two spinners pinned to one CPU in the cgroup: one always waits for the other.
- memory: a reader pushes a file four times memory.max through the page cache of the
  cgroup: its charges must reclaim (memstall).
- io: O_DIRECT reads of the scratch disk: the task sleeps in iowait for each.
Each total (`some`, microseconds) must grow while the cgroup's tasks run and the
collector's value must lie between the file read just before and just after it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable

import pytest

from kpodmetrics.collectors.files.pressure import PressureCollector
from tests.conftest import require_root
from tests.kernel.cgroup_util import (
    KernelCgroup,
    build_helper,
    make_cgroups,
    require_v2,
    spawn_in,
    write,
)
from tests.kernel.test_cgfiles_real import collect, ref_of
from tests.kernel.test_v2_io import scratch_disk

pytestmark = pytest.mark.kernel
MIB = 1 << 20


def some_total(cg: KernelCgroup, res: str) -> int:
    with open(os.path.join(cg.path, f"{res}.pressure")) as fh:
        for line in fh:
            kind, *pairs = line.split()
            if kind == "some":
                return int(dict(p.split("=", 1) for p in pairs)["total"])
    raise LookupError(f"{res}.pressure has no 'some' line")


def released(p: subprocess.Popen[bytes]) -> None:
    assert p.stdin is not None and p.stdout is not None
    assert p.stdout.readline() == b"ready\n"
    p.stdin.write(b"g")
    p.stdin.flush()
    assert p.stdout.readline() == b"done\n"


def cpu_contention(cg: KernelCgroup) -> None:
    exe = build_helper("workload")
    procs = [spawn_in(cg, ["taskset", "-c", "0", exe, "spin", "1000"],
                      stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(2)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline() == b"ready\n"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(b"g")
            p.stdin.flush()
        for p in procs:
            assert p.stdout is not None and p.stdout.readline() == b"done\n"
    finally:
        for p in procs:
            p.kill()
            p.wait()


def page_cache_through_a_small_limit(cg: KernelCgroup) -> None:
    limit = 16 * MIB
    write(cg, "memory.max", str(limit))
    path = os.path.join(scratch_disk()[0], f"kpod-test-psi-{os.getpid()}")
    try:
        with open(path, "wb") as fh:
            fh.write(os.urandom(4 * limit))
            fh.flush()
            os.fsync(fh.fileno())
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        for _ in range(2):
            r = spawn_in(cg, ["dd", f"if={path}", "of=/dev/null", "bs=1M"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            assert r.wait(timeout=120) == 0
    finally:
        os.unlink(path)


def direct_reads(cg: KernelCgroup) -> None:
    block, count = 64 << 10, 256
    path = os.path.join(scratch_disk()[0], f"kpod-test-psi-io-{os.getpid()}")
    try:
        with open(path, "wb") as fh:
            fh.write(os.urandom(block * count))
            fh.flush()
            os.fsync(fh.fileno())
        p = spawn_in(cg, [build_helper("direct_io"), path, str(block), str(count)],
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        released(p)
        assert p.wait(timeout=120) == 0
    finally:
        os.unlink(path)


WORKLOADS: dict[str, tuple[str, Callable[[KernelCgroup], None]]] = {
    "cpu": ("cpu", cpu_contention),
    "memory": ("memory", page_cache_through_a_small_limit),
    "io": ("io", direct_reads),
}


@pytest.mark.parametrize("res", list(WORKLOADS))
def test_pressure_total_advances_under_its_workload(res: str) -> None:
    require_root()
    controller, workload = WORKLOADS[res]
    require_v2(controller)
    with make_cgroups("psi", controllers=(controller,)) as (cg,):
        start = some_total(cg, res)
        workload(cg)
        before = some_total(cg, res)
        got, errors = collect(PressureCollector(), [ref_of(cg)])
        after = some_total(cg, res)
    print(f"\n{res}.pressure some total: {start} -> {before} us")
    assert errors == {}
    assert before > start, f"{res} pressure did not advance under its workload"
    assert before / 1e6 <= got[(f"kpod_pressure_{res}_waiting_seconds_total", cg.id, ())] <= after / 1e6

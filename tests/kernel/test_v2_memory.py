"""memory.current/peak/stat/events and the memory.max OOM path, on pure cgroup v2.

Oracles: a known allocation (mem_hog touches N MiB of anonymous memory), the kernel's
own interface files read around each collection, the wait status of a process the
OOM killer took, and for the kill itself the eBPF OOM counter against memory.events.
- usage and stat: anon grows by the allocation; the memory collector exports exactly
  what memory.current/stat/peak say while the helper sits still; a file the kernel
  lacks (memory.peak before 5.19) is not exported at all, never as zero.
- events: reading a file larger than memory.max through the page cache hits the limit
  (events `max`); the collector's kpod_mem_events_total equals memory.events.
- OOM: a helper allocating past memory.max (no swap) is SIGKILLed; memory.events
  says oom_kill 1; the collector, and the eBPF mem collector's count for that cgroup,
  say 1.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from kpodmetrics.bpf.maps import u64_key
from kpodmetrics.bpf.structs import KpodMemStats
from kpodmetrics.collectors.ebpf.mem_events import MemCollector
from kpodmetrics.collectors.files.memory import MemoryCollector
from tests.conftest import require_root
from tests.kernel.cgroup_util import (
    KernelCgroup,
    build_helper,
    make_cgroups,
    read_keyed,
    require_v2,
    spawn_in,
    write,
)
from tests.kernel.test_cgfiles_real import collect, ref_of

pytestmark = pytest.mark.kernel
MIB = 1 << 20
ALLOC_MIB = 64


def read_int(cg: KernelCgroup, name: str) -> int:
    with open(os.path.join(cg.path, name)) as fh:
        return int(fh.read())


def hog(cg: KernelCgroup, mib: int) -> subprocess.Popen[bytes]:
    p = spawn_in(cg, [build_helper("mem_hog"), str(mib)], stdin=subprocess.PIPE,
                 stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline() == b"ready\n"
    return p


def go(p: subprocess.Popen[bytes]) -> None:
    assert p.stdin is not None
    p.stdin.write(b"g")
    p.stdin.flush()


def test_usage_stat_peak_match_files_and_the_allocation() -> None:
    require_root()
    require_v2("memory")
    with make_cgroups("mem", controllers=("memory",)) as (cg,):
        p = hog(cg, ALLOC_MIB)
        try:
            anon0 = read_keyed(cg, "memory.stat")["anon"]
            go(p)
            assert p.stdout is not None and p.stdout.readline() == b"done\n"
            cur_before, stat_before = read_int(cg, "memory.current"), read_keyed(cg, "memory.stat")
            got, errors = collect(MemoryCollector(), [ref_of(cg)])
            cur_after, stat_after = read_int(cg, "memory.current"), read_keyed(cg, "memory.stat")
            has_peak = os.path.exists(os.path.join(cg.path, "memory.peak"))
            peak = read_int(cg, "memory.peak") if has_peak else None
        finally:
            p.kill()
            p.wait()
    print(f"\nmemory: anon {anon0} -> {stat_after['anon']}, current {cur_before}/{cur_after}, "
          f"peak {peak}")
    assert errors == {}
    grown = stat_after["anon"] - anon0
    # 64 one-MiB mallocs (each an mmap with a header page), all touched
    assert ALLOC_MIB * MIB <= grown <= (ALLOC_MIB + 4) * MIB
    assert stat_before["anon"] == stat_after["anon"], "the helper sits in pause()"
    assert got[("kpod_mem_anon_bytes", cg.id, ())] == stat_after["anon"]
    assert got[("kpod_mem_file_bytes", cg.id, ())] == stat_after["file"]
    lo, hi = sorted((cur_before, cur_after))
    assert lo <= got[("kpod_mem_usage_bytes", cg.id, ())] <= hi
    assert got[("kpod_mem_usage_bytes", cg.id, ())] >= stat_after["anon"]
    if peak is None:  # memory.peak is 5.19+: absent here, so not exported (not zero)
        assert ("kpod_mem_peak_bytes", cg.id, ()) not in got
    else:
        assert got[("kpod_mem_peak_bytes", cg.id, ())] <= peak
        assert got[("kpod_mem_peak_bytes", cg.id, ())] >= ALLOC_MIB * MIB


def test_memory_events_of_a_limited_page_cache_reader() -> None:
    require_root()
    require_v2("memory")
    scratch = os.environ.get("VM_SCRATCH", "/var/tmp")
    path = os.path.join(scratch, f"kpod-test-mem-{os.getpid()}")
    limit = 16 * MIB
    try:
        with open(path, "wb") as fh:
            fh.write(os.urandom(4 * limit))
            fh.flush()
            os.fsync(fh.fileno())
            # our cached pages are charged to our cgroup: drop them so the reader's are its own
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        with make_cgroups("mem", controllers=("memory",)) as (cg,):
            write(cg, "memory.max", str(limit))
            r = spawn_in(cg, ["dd", f"if={path}", "of=/dev/null", "bs=1M"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            assert r.wait(timeout=120) == 0
            # the file is 4x the limit: it went through the page cache within memory.max
            events = read_keyed(cg, "memory.events")
            got, errors = collect(MemoryCollector(), [ref_of(cg)])
            events_after = read_keyed(cg, "memory.events")
    finally:
        os.unlink(path)
    print(f"\nmemory.events {events}")
    assert errors == {}
    assert events == events_after
    assert events["max"] > 0, "reading 4x memory.max through the page cache hits the limit"
    assert events["oom_kill"] == 0
    for ev in ("low", "high", "max", "oom", "oom_kill"):
        assert got[("kpod_mem_events_total", cg.id, (("event", ev),))] == events[ev]


def test_memory_max_oom_kill_counted_by_files_and_ebpf() -> None:
    require_root()
    require_v2("memory")
    mem = MemCollector()
    mem.start()
    try:
        oom = {s.signal.name: s for s in mem.signal_states()}["oom_kills"]
        assert oom.available, oom.reason  # whichever variant this kernel takes
        print(f"\noom_kills through variant {oom.variant} ({oom.programs})")
        with make_cgroups("oom", controllers=("memory",)) as (cg,):
            write(cg, "memory.max", str(32 * MIB))
            if os.path.exists(os.path.join(cg.path, "memory.swap.max")):
                write(cg, "memory.swap.max", "0")
            p = hog(cg, ALLOC_MIB)
            mem.read_map("mem_stats")  # from zero
            go(p)
            assert p.wait(timeout=60) == -9, "the OOM killer must take the helper"
            events = read_keyed(cg, "memory.events")
            got, errors = collect(MemoryCollector(), [ref_of(cg)])
            stats = {u64_key(k): KpodMemStats.from_buffer_copy(v)
                     for k, v in mem.read_map("mem_stats").items()}
    finally:
        mem.close()
    print(f"\nOOM: memory.events {events}, eBPF "
          f"{stats[cg.id].oom_kills if cg.id in stats else 'no entry'}")
    assert events["oom_kill"] == 1
    assert events["oom"] >= 1 and events["max"] >= 1
    assert errors == {}
    assert got[("kpod_mem_events_total", cg.id, (("event", "oom_kill"),))] == 1
    assert got[("kpod_mem_events_total", cg.id, (("event", "oom"),))] == events["oom"]
    assert cg.id in stats, "the eBPF collector saw no OOM kill in the victim's cgroup"
    assert stats[cg.id].oom_kills == 1

"""Per-syscall counts, errors and latency against a helper's exact call counts.

A compiled helper in its own test cgroup makes exactly N openat calls, M of them on
a missing path; the kernel must report N calls, M errors and N latency samples for
that cgroup. A getppid storm (untracked) must add nothing, an idle cgroup must stay
absent. The filter tests guard against the original project's failure: a filter
that was never filled measures nothing, so the collector must refuse to run then.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator

import pytest

from kpodmetrics import syscalls
from kpodmetrics.bpf.loader import BpfObject, LoadOptions
from kpodmetrics.bpf.structs import KpodSysKey, KpodSysStats
from kpodmetrics.collectors.base import CollectContext, CollectorUnavailable
from kpodmetrics.collectors.ebpf.syscalls import SyscallCollector
from kpodmetrics.config import DEFAULT_SYSCALLS
from kpodmetrics.samples import HistogramSample, Sample
from tests.bpf_owned import map_names
from tests.conftest import require_root
from tests.kernel.cgroup_util import KernelCgroup, build_helper, make_cgroups, spawn_in
from tests.kernel.variant_util import kernel_release, start_forced

N_CALLS = 1000
N_FAIL = 337
STORM = 200_000


def start(cg: KernelCgroup, *args: str) -> subprocess.Popen[bytes]:
    p = spawn_in(cg, [build_helper("sys_calls"), *args], stdin=subprocess.PIPE,
                 stdout=subprocess.PIPE)
    assert p.stdout is not None
    assert p.stdout.readline() == b"ready\n"
    return p


def go(p: subprocess.Popen[bytes]) -> int:
    """Release a helper and wait for its "done <count>"."""
    assert p.stdin is not None and p.stdout is not None
    p.stdin.write(b"g")
    p.stdin.flush()
    word, count = p.stdout.readline().split()
    assert word == b"done"
    return int(count)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.kill()
        p.wait()


def per_key(read_items: list[tuple[bytes, bytes]]) -> dict[tuple[int, int], KpodSysStats]:
    out = {}
    for k, v in read_items:
        key = KpodSysKey.from_buffer_copy(k)
        out[(int(key.cgroup_id), int(key.nr))] = KpodSysStats.from_buffer_copy(v)
    return out


def lacks(variant: str) -> Callable[[str], str]:
    """What the kernel must offer for each start-map variant (ebpf/core_fixes.bpf.h)."""
    def why(reason: str) -> str:
        if variant == "task_storage" and kernel_release() < (5, 13):
            return "task-local storage in tracing programs (5.13, commit a10787e6d58c)"
        return ""
    return why


@pytest.fixture(params=["task_storage", "hash"])
def collector(request: pytest.FixtureRequest) -> Iterator[SyscallCollector]:
    """The collector on each variant of its start map (the hash is 5.10's)."""
    require_root()
    c = start_forced(SyscallCollector, "syscalls", request.param, lacks(request.param),
                     syscalls.resolve(DEFAULT_SYSCALLS))
    yield c
    c.close()


@pytest.mark.kernel
def test_only_the_chosen_start_map_exists(collector: SyscallCollector) -> None:
    """The start map of the variant not in use is never created (1.4 MB for the hash at
    its default size): the kernel's own list of this process's maps has only one."""
    [state] = collector.signal_states()
    held = map_names(os.getpid())
    own, other = ("sys_task_start", "sys_start") if state.variant == "task_storage" \
        else ("sys_start", "sys_task_start")
    assert own in held and other not in held, (state.variant, held)
    health = {h.map: h for h in collector.map_health()}
    assert set(health) == {"sys_stats", own}
    # task storage has no capacity to run out of; the hash has its max_entries
    assert health[own].capacity == (None if own == "sys_task_start" else 16384)


@pytest.mark.kernel
def test_openat_count_errors_latency_exact(collector: SyscallCollector) -> None:
    nr = syscalls.table()
    with make_cgroups("work", "storm", "idle") as (work, storm, idle):
        procs = [start(work, "openat", str(N_CALLS), str(N_FAIL)),
                 start(storm, "storm", str(STORM)), start(idle, "idle")]
        collector.read_map("sys_stats")  # snap-and-reset: from zero
        assert go(procs[0]) == N_CALLS
        assert go(procs[1]) == STORM
        got = per_key(collector.read_map("sys_stats").items())
        stop(procs)

    st = got[(work.id, nr["openat"])]
    assert sum(st.latency.slots) == N_CALLS
    assert st.latency.count == N_CALLS
    assert st.errors == N_FAIL
    assert st.latency.sum > 0
    # the successful opens were closed: N - M close calls, none failing
    closes = got[(work.id, nr["close"])]
    assert closes.latency.count == N_CALLS - N_FAIL and closes.errors == 0
    # the storm is untracked: no getppid anywhere, and its cgroup has at most the
    # exit of the blocked read(0) and the write of "done"
    assert not [k for k in got if k[1] == nr["getppid"]]
    storm_keys = {k[1]: s.latency.count for k, s in got.items() if k[0] == storm.id}
    assert set(storm_keys) <= {nr["read"], nr["write"]}
    assert all(c <= 1 for c in storm_keys.values())
    # idle cgroup: nothing at all
    assert not [k for k in got if k[0] == idle.id]


@pytest.mark.kernel
def test_empty_filter_measures_nothing_and_filled_one_does() -> None:
    """The same object with the filter left empty, then filled by the collector code."""
    require_root()
    nr = syscalls.table()["openat"]
    obj = BpfObject("syscall", opts=LoadOptions(signals=SyscallCollector.signals)).load()
    try:
        obj.attach()
        with make_cgroups("work") as (work,):
            p = start(work, "openat", "200", "0")
            obj.map("sys_stats").read_and_reset()
            go(p)
            empty = per_key(obj.map("sys_stats").read_and_reset().items())
            stop([p])
            assert not [k for k in empty if k[0] == work.id]
            assert not empty, "an empty filter must measure no syscall at all"

            c = SyscallCollector({"openat": nr})
            c.fill_filter(obj)
            c.verify_filter(obj)
            p = start(work, "openat", "200", "0")
            obj.map("sys_stats").read_and_reset()
            go(p)
            filled = per_key(obj.map("sys_stats").read_and_reset().items())
            stop([p])
        assert filled[(work.id, nr)].latency.count == 200
    finally:
        obj.close()


@pytest.mark.kernel
def test_collector_refuses_a_filter_that_did_not_load(monkeypatch: pytest.MonkeyPatch) -> None:
    require_root()
    monkeypatch.setattr(SyscallCollector, "fill_filter", lambda self, obj: None)
    c = SyscallCollector(syscalls.resolve(["openat", "read"]))
    with pytest.raises(CollectorUnavailable, match=r"missing: .*openat"):
        c.start()
    assert c.obj is None and not c.programs(), "nothing may stay loaded"
    c.close()


@pytest.mark.kernel
def test_empty_list_loads_nothing() -> None:
    require_root()
    before = _own_bpf_fds()
    c = SyscallCollector({})
    c.start()
    assert c.obj is None and list(c.collect(None)) == []  # type: ignore[arg-type]
    assert _own_bpf_fds() == before
    c.close()


def _own_bpf_fds() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            n += "bpf" in os.readlink(f"/proc/self/fd/{fd}")
    return n


@pytest.mark.kernel
def test_collect_emits_labelled_samples(collector: SyscallCollector) -> None:
    """The same workload through collect(): the samples the exporter receives."""
    with make_cgroups("work") as (work,):
        p = start(work, "openat", str(N_CALLS), str(N_FAIL))
        list(collector.collect(CollectContext(targets=[], cgroup_root="")))  # from zero
        go(p)
        out = list(collector.collect(CollectContext(targets=[], cgroup_root="")))
        stop([p])
    mine = [s for s in out if s.cgroup_id == work.id and s.labels == (("syscall", "openat"),)]
    by_family = {s.family.name: s for s in mine}
    count = by_family["kpod_syscall_count_total"]
    errors = by_family["kpod_syscall_errors_total"]
    hist = by_family["kpod_syscall_latency_seconds"]
    assert isinstance(count, Sample) and count.value == N_CALLS
    assert isinstance(errors, Sample) and errors.value == N_FAIL
    assert isinstance(hist, HistogramSample) and hist.count == N_CALLS and hist.total > 0
    health = {h.map: h for h in collector.map_health()}
    start_map = "sys_task_start" if collector.signal_states()[0].variant == "task_storage" \
        else "sys_start"
    assert health["sys_stats"].update_errors == 0 and health[start_map].update_errors == 0

"""Run-queue latency, context switches and who held the CPU, per cgroup
(ebpf/cpu_sched.bpf.c).

The holder family comes from cpu_holders, a map keyed by a pair of cgroups (waiter,
holder); it is handed over as `PeerSample`s, which the store folds into the top k
holders per waiting owner and `__other__` (export/peers.py): the collector cannot do
that itself, it does not know owners."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from kpodmetrics import families
from kpodmetrics.bpf.mapspec import Count, Hist, MapDecoder, MapSpec
from kpodmetrics.bpf.structs import (
    KPOD_HEALTH_CPU_HOLDERS,
    KPOD_HEALTH_CPU_START,
    KPOD_HEALTH_CPU_STATS,
    KpodCpuStats,
    KpodHolderKey,
    KpodHolderStats,
)
from kpodmetrics.bpf.variants import Signal, Variant
from kpodmetrics.collectors.base import CollectContext
from kpodmetrics.collectors.ebpf.base import BpfCollectorBase
from kpodmetrics.config import Settings
from kpodmetrics.families import Family, FamilyType
from kpodmetrics.samples import AnySample, PeerSample

NS = 1e-9
# le = 2^k ns for k = 10, 12, ..., 30: 1.02 us ... 1.07 s; every bound is exact.
LATENCY_EXPONENTS = tuple(range(10, 31, 2))

RUNQUEUE = Family(
    "kpod_cpu_runqueue_latency_seconds", FamilyType.HISTOGRAM,
    "Time tasks waited in the CPU run queue before running, charged to the task switched in",
    unit="s", bucket_exponents=LATENCY_EXPONENTS, scale=NS,
)
CONTEXT_SWITCHES = Family(
    "kpod_cpu_context_switches_total", FamilyType.COUNTER,
    "Context switches of tasks switched out, by kind (voluntary: blocked; involuntary: preempted)",
    label_names=("kind",),
)
HOLDER = Family(
    "kpod_cpu_runqueue_wait_by_holder_seconds_total", FamilyType.COUNTER,
    "Run-queue wait of the owner's tasks by the owner of the task that held the CPU (the "
    "one the waiter replaced; __idle__: an idle CPU, __other__: holders beyond the top k "
    "of a cycle); holder_cgroup standalone",
    unit="s", label_names=("holder_namespace", "holder_pod", "holder_container"),
)
families.register(RUNQUEUE, CONTEXT_SWITCHES, HOLDER)

STATS = MapSpec("cpu_stats", KpodCpuStats, fields=(
    Hist("runq", RUNQUEUE),
    Count("nvcsw", CONTEXT_SWITCHES, (("kind", "voluntary"),)),
    Count("nivcsw", CONTEXT_SWITCHES, (("kind", "involuntary"),)),
))
"""cpu_stats: cgroup id -> struct kpod_cpu_stats."""

HOLDERS = MapSpec("cpu_holders", KpodHolderStats, fields=(), key=KpodHolderKey,
                  key_raw=("holder_cgroup_id",), raw=("wait_ns",))
"""cpu_holders: (waiter cgroup id, holder cgroup id or 0 = idle) -> wait in ns; feeds
HOLDER through PeerSamples."""

_WAKE_BTF = ("kpod_sched_wakeup", "kpod_sched_wakeup_new")
_WAKE_RAW = ("kpod_sched_wakeup_raw", "kpod_sched_wakeup_new_raw")
RUNQUEUE_SIGNAL = Signal("runqueue", families=(RUNQUEUE, CONTEXT_SWITCHES, HOLDER), variants=(
    # 5.18+: the kernel passes prev's state as the 4th argument
    Variant("tp_btf", ("kpod_sched_switch", *_WAKE_BTF)),
    # 5.17 and older: 3 arguments, prev's state read from the task via CO-RE
    Variant("tp_btf_3arg", ("kpod_sched_switch_btf3", *_WAKE_BTF)),
    # where BTF-typed tracepoints are refused: untyped arguments, probe reads
    Variant("raw_tp", ("kpod_sched_switch_raw", *_WAKE_RAW)),
    Variant("raw_tp_3arg", ("kpod_sched_switch_raw3", *_WAKE_RAW)),
))
"""All three families come from the same three hooks; which kernel takes which variant, and
why: ebpf/core_fixes.bpf.h (sched block)."""


START_PER_CPU = 256
START_MIN = 8192


def start_map_size(cpus: int) -> int:
    """Entries of cpu_start: it holds one stamp per task waiting in a run queue (dying
    tasks' stamps are reaped in the kernel), so it scales with the CPUs: 256 queued
    tasks per CPU before an insert fails (counted in kpod_bpf_map_update_errors_total),
    never fewer than 8192. 64 bytes per preallocated entry: 2 CPUs 0.5 MB, 192 CPUs
    3.1 MB."""
    return max(START_MIN, START_PER_CPU * max(cpus, 1))


class CpuSchedCollector(BpfCollectorBase):
    name = "cpu"
    object_name = "cpu_sched"
    health_map = "cpu_health"
    metric_maps = {STATS.map: KPOD_HEALTH_CPU_STATS, "cpu_start": KPOD_HEALTH_CPU_START,
                   HOLDERS.map: KPOD_HEALTH_CPU_HOLDERS}
    families = (*STATS.families, HOLDER)
    signals = (RUNQUEUE_SIGNAL,)

    def __init__(self, *, legacy_maps: bool = False, max_entries: Mapping[str, int] | None = None,
                 only: frozenset[str] | None = None,
                 variants: Mapping[str, str] | None = None) -> None:
        sizes = {"cpu_start": start_map_size(os.cpu_count() or 1), **(max_entries or {})}
        super().__init__(legacy_maps=legacy_maps, max_entries=sizes, only=only, variants=variants)
        self.decoder = MapDecoder(STATS)
        self.holders = MapDecoder(HOLDERS)

    def collect(self, ctx: CollectContext) -> Iterable[AnySample]:
        # holders first: a wait that lands between the two reads is then in the
        # histogram of this cycle and the holders of the next, never the reverse
        pairs = self.holders.decode(self.read_map(HOLDERS.map)).raw
        out: list[AnySample] = list(self.decoder.decode(self.read_map(STATS.map)).samples)
        out += [PeerSample(HOLDER, cg, holder, wait_ns * NS) for cg, (holder, wait_ns) in pairs]
        return out


def create(settings: Settings) -> CpuSchedCollector:
    return CpuSchedCollector(legacy_maps=settings.legacy_maps)

"""Run-queue latency and context switches per cgroup (ebpf/cpu_sched.bpf.c)."""

from __future__ import annotations

from collections.abc import Iterable

from kpodmetrics import families
from kpodmetrics.bpf.mapspec import Count, Hist, MapDecoder, MapSpec
from kpodmetrics.bpf.structs import KPOD_HEALTH_CPU_START, KPOD_HEALTH_CPU_STATS, KpodCpuStats
from kpodmetrics.collectors.base import CollectContext
from kpodmetrics.collectors.ebpf.base import BpfCollectorBase
from kpodmetrics.config import Settings
from kpodmetrics.families import Family, FamilyType
from kpodmetrics.samples import HistogramSample, Sample

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
families.register(RUNQUEUE, CONTEXT_SWITCHES)

STATS = MapSpec("cpu_stats", KpodCpuStats, fields=(
    Hist("runq", RUNQUEUE),
    Count("nvcsw", CONTEXT_SWITCHES, (("kind", "voluntary"),)),
    Count("nivcsw", CONTEXT_SWITCHES, (("kind", "involuntary"),)),
))
"""cpu_stats: cgroup id -> struct kpod_cpu_stats."""


class CpuSchedCollector(BpfCollectorBase):
    name = "cpu"
    object_name = "cpu_sched"
    health_map = "cpu_health"
    metric_maps = {STATS.map: KPOD_HEALTH_CPU_STATS, "cpu_start": KPOD_HEALTH_CPU_START}
    families = STATS.families

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.decoder = MapDecoder(STATS)

    def collect(self, ctx: CollectContext) -> Iterable[Sample | HistogramSample]:
        return self.decoder.decode(self.read_map(STATS.map)).samples


def create(settings: Settings) -> CpuSchedCollector:
    return CpuSchedCollector(legacy_maps=settings.legacy_maps)

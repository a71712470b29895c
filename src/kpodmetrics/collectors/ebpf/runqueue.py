"""Run-queue latency and context switches per cgroup (ebpf/cpu_sched.bpf.c)."""

from __future__ import annotations

from collections.abc import Iterator

from kpodmetrics import families
from kpodmetrics.bpf.maps import MapRead
from kpodmetrics.bpf.structs import KpodCpuStats, u64_key
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

_VOL = (("kind", "voluntary"),)
_INVOL = (("kind", "involuntary"),)


class CpuSchedCollector(BpfCollectorBase):
    name = "cpu"
    object_name = "cpu_sched"
    health_map = "cpu_health"
    metric_maps = {"cpu_stats": 0, "cpu_start": 1}
    families = (RUNQUEUE, CONTEXT_SWITCHES)

    def collect(self, ctx: CollectContext) -> Iterator[Sample | HistogramSample]:
        return decode(self.read_map("cpu_stats"))


def decode(read: MapRead) -> Iterator[Sample | HistogramSample]:
    """Samples from one snap of cpu_stats (cgroup id -> struct kpod_cpu_stats)."""
    for key, value in read.items():
        cg = u64_key(key)
        st = KpodCpuStats.from_buffer_copy(value)
        slots = tuple(st.runq.slots)
        if any(slots):
            yield HistogramSample(RUNQUEUE.name, cg, slots, int(st.runq.sum))
        if st.nvcsw:
            yield Sample(CONTEXT_SWITCHES.name, cg, float(st.nvcsw), labels=_VOL)
        if st.nivcsw:
            yield Sample(CONTEXT_SWITCHES.name, cg, float(st.nivcsw), labels=_INVOL)


def create(settings: Settings) -> CpuSchedCollector:
    return CpuSchedCollector(legacy_maps=settings.legacy_maps)

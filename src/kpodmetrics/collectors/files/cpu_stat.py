"""CPU time and throttling per cgroup from `cpu.stat`.

usage/user/system_usec are always there (cgroup rstat, even without the cpu
controller); nr_periods, nr_throttled and throttled_usec appear only where the cpu
controller is enabled. Later keys (nice_usec, nr_bursts, burst_usec,
core_sched.force_idle_usec) are parsed and ignored. Microseconds become seconds.
"""

from __future__ import annotations

from kpodmetrics import families
from kpodmetrics.collectors.base import CollectContext
from kpodmetrics.collectors.files.support.formats import parse_flat_keyed
from kpodmetrics.collectors.files.support.percgroup import PerCgroupCollector
from kpodmetrics.config import Settings
from kpodmetrics.families import Family, FamilyType
from kpodmetrics.pods.owner import CgroupRef
from kpodmetrics.samples import Kind, Sample

NAME = "cpustat"
USAGE = Family("kpod_cpu_usage_seconds_total", FamilyType.COUNTER,
               "CPU time used by the cgroup (cpu.stat usage_usec).", "s")
USER = Family("kpod_cpu_user_seconds_total", FamilyType.COUNTER,
              "CPU time in user mode (cpu.stat user_usec).", "s")
SYSTEM = Family("kpod_cpu_system_seconds_total", FamilyType.COUNTER,
                "CPU time in kernel mode (cpu.stat system_usec).", "s")
PERIODS = Family("kpod_cpu_periods_total", FamilyType.COUNTER,
                 "CFS bandwidth periods that elapsed with runnable tasks (cpu.stat nr_periods).")
THROTTLED_PERIODS = Family(
    "kpod_cpu_throttled_periods_total", FamilyType.COUNTER,
    "CFS bandwidth periods in which the cgroup was throttled (cpu.stat nr_throttled).")
THROTTLED = Family("kpod_cpu_throttled_seconds_total", FamilyType.COUNTER,
                   "Time the cgroup spent throttled by its CPU limit (cpu.stat throttled_usec).",
                   "s")
FAMILIES = families.register(USAGE, USER, SYSTEM, PERIODS, THROTTLED_PERIODS, THROTTLED)
_KEYS = (
    ("usage_usec", USAGE, 1e6),
    ("user_usec", USER, 1e6),
    ("system_usec", SYSTEM, 1e6),
    ("nr_periods", PERIODS, 1.0),
    ("nr_throttled", THROTTLED_PERIODS, 1.0),
    ("throttled_usec", THROTTLED, 1e6),
)


class CpuStatCollector(PerCgroupCollector):
    name = NAME
    families = FAMILIES
    files = ("cpu.stat",)
    # bandwidth figures are the cgroup's own quota's, not sums over its children
    own_value = frozenset({PERIODS, THROTTLED_PERIODS, THROTTLED})

    def samples_for(
        self, ref: CgroupRef, contents: dict[str, bytes], ctx: CollectContext
    ) -> list[Sample]:
        data = contents.get("cpu.stat")
        if data is None:
            return []
        parsed = parse_flat_keyed(data)
        bad = parsed.malformed
        out = []
        for key, family, divisor in _KEYS:
            value = parsed.values.get(key)
            if value is None:
                continue
            if value < 0:
                bad += 1
                continue
            out.append(Sample(family, ref.cgroup_id, value / divisor, Kind.CUMULATIVE))
        if bad:
            ctx.count_error(self.name, bad)
        return out


def create(settings: Settings) -> CpuStatCollector:
    return CpuStatCollector()

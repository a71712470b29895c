"""The pod-level cgroup's series: what the pod used that none of its listed containers did.

cgroup v2 files are hierarchical and the kernel folds a removed child's totals into
its parent: a pod directory's cpu.stat, io.stat, memory.events hold every container
it ever had, dead or alive, plus the sandbox and the pod's own processes. Reading it
as one more owner (`container=""`) therefore double counts, and reading it only while
no container is listed re-adds its whole lifetime each time it comes back.

The rule (docs/cgroup-signals.md, "Which cgroup is read"): the pod directory is read
every cycle, *before* its containers, and its series carry the remainder

    counter:  R = P - (last reading of every container cgroup of the pod, live or dead)
    level:    L = max(0, P - sum of this cycle's container levels)

R is handed over as a kernel cumulative reading that never goes down (a smaller R,
e.g. from read timing, holds the previous value), so the store moves the pod series
only by genuine growth. Reading the pod first means R can only lag, never run ahead:
`sum by (pod)` of an additive counter never exceeds the pod cgroup's own total, and a
container that dies hands its counted total to no one (its last reading stays in the
sum; what it did after that reading lands in R).

Families that are not sums over the tree (PSI stall time: overlapping stalls are one
stall of the pod; CFS throttling of the cgroup's own quota; memory.peak) are passed
through: the pod series is the pod cgroup's own value.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from kpodmetrics.families import Family
from kpodmetrics.samples import Kind, Labels, Sample

SeriesKey = tuple[str, Labels, str]
"""(family name, labels, source) of one reading."""


def _key(s: Sample) -> SeriesKey:
    return (s.family.name, s.labels, s.source)


@dataclass(slots=True)
class PodLedger:
    """What the containers of one pod cgroup have been credited with so far."""

    pod_cgroup: int
    live: dict[int, dict[SeriesKey, float]] = field(default_factory=dict)
    """container cgroup id -> its last cumulative reading per series."""
    dead: dict[SeriesKey, float] = field(default_factory=dict)
    """Sum of the last readings of containers that are no longer listed."""
    emitted: dict[SeriesKey, float] = field(default_factory=dict)
    """The last remainder handed over per series (never decreases)."""
    raw: dict[SeriesKey, float] = field(default_factory=dict)
    """The pod cgroup's last own reading per series (a drop is a reset)."""

    def retire_missing(self, listed: Collection[int]) -> None:
        """Containers no longer listed keep their last readings, in `dead`."""
        for cid in [c for c in self.live if c not in listed]:
            for key, value in self.live.pop(cid).items():
                self.dead[key] = self.dead.get(key, 0.0) + value

    def remainder(
        self,
        pod_samples: Iterable[Sample],
        container_samples: Iterable[Sample],
        own_value: Collection[Family],
    ) -> list[Sample]:
        """The pod cgroup's samples rewritten as remainders (see module docstring);
        `container_samples` are this cycle's readings of its listed containers."""
        levels: dict[SeriesKey, float] = {}
        for s in container_samples:
            if s.kind is Kind.CUMULATIVE:
                self.live.setdefault(s.cgroup_id, {})[_key(s)] = s.value
            elif s.kind is Kind.GAUGE:
                levels[_key(s)] = levels.get(_key(s), 0.0) + s.value
        credited: dict[SeriesKey, float] = dict(self.dead)
        for readings in self.live.values():
            for key, value in readings.items():
                credited[key] = credited.get(key, 0.0) + value
        out: list[Sample] = []
        for s in pod_samples:
            key = _key(s)
            if s.family in own_value or s.kind is Kind.DELTA:
                out.append(s)
            elif s.kind is Kind.GAUGE:
                out.append(_with_value(s, max(0.0, s.value - levels.get(key, 0.0))))
            else:
                if s.value < self.raw.get(key, 0.0):
                    self._reset(key)  # a recreated cgroup under a reused id
                    credited[key] = self._credited(key)
                self.raw[key] = s.value
                value = max(self.emitted.get(key, 0.0), s.value - credited.get(key, 0.0))
                self.emitted[key] = value
                out.append(_with_value(s, value))
        return out

    def _reset(self, key: SeriesKey) -> None:
        """Start the series' accounting over: the store then sees a lower reading,
        which it treats as a reset, as for any kernel total."""
        self.emitted.pop(key, None)
        self.dead.pop(key, None)

    def _credited(self, key: SeriesKey) -> float:
        return sum(r.get(key, 0.0) for r in self.live.values())


def _with_value(s: Sample, value: float) -> Sample:
    return Sample(s.family, s.cgroup_id, value, s.kind, s.labels, s.source)

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

A container that ran before the API named it (its cgroup was in the pod's totals but
not a target yet) had its first moments counted in R already. R cannot give them
back, so such a container is credited from a baseline: the part of its first reading
that R had counted. Before a pod's first container its readings pass unchanged
(standalone cgroups never have containers).

Families that are not sums over the tree (PSI stall time: overlapping stalls are one
stall of the pod; CFS throttling of the cgroup's own quota; memory.peak) are passed
through: the pod series is the pod cgroup's own value.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
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
    passed: list[Sample] | None = None
    """While the pod never had a container (standalone cgroups, a pod before its
    first container): its last readings, passed through as they were (R = P)."""

    baseline: dict[int, dict[SeriesKey, float]] = field(default_factory=dict)
    """Per container cgroup: what of its first reading the pod series had already
    counted (it ran before the API named it); not credited to it again."""

    def retire_missing(self, listed: Collection[int]) -> None:
        """Containers no longer listed keep their last readings, in `dead`."""
        for cid in [c for c in self.live if c not in listed]:
            for key, value in self.live.pop(cid).items():
                self.dead[key] = self.dead.get(key, 0.0) + value
            self.baseline.pop(cid, None)

    def settle(
        self,
        pod_samples: Sequence[Sample],
        container_samples: Sequence[Sample],
        own_value: Collection[Family],
    ) -> list[Sample]:
        """This cycle's samples of the pod: the pod cgroup's rewritten as remainders,
        then its listed containers' (see module docstring)."""
        if not container_samples and not self.live and not self.dead:
            if pod_samples:  # no container ever: the remainder is the reading itself
                self.passed = list(pod_samples)
            return list(pod_samples)
        if self.passed is not None:  # the first container: go on from what was handed over
            for s in self.passed:
                if s.kind is Kind.CUMULATIVE and s.family not in own_value:
                    self.emitted.setdefault(_key(s), s.value)
                    self.raw.setdefault(_key(s), s.value)
            self.passed = None
        containers = self._credit(pod_samples, container_samples, own_value)
        levels: dict[SeriesKey, float] = {}
        for s in container_samples:
            if s.kind is Kind.GAUGE:
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
        out.extend(containers)
        return out

    def _credit(
        self,
        pod_samples: Sequence[Sample],
        container_samples: Sequence[Sample],
        own_value: Collection[Family],
    ) -> list[Sample]:
        """Record the containers' readings; a container cgroup new to a pod the pod
        series already counted starts from a baseline: the part of its first reading
        that the remainder would otherwise have to give back (it cannot go down)."""
        new: dict[SeriesKey, list[Sample]] = {}
        for s in container_samples:
            if s.kind is not Kind.CUMULATIVE or s.family in own_value:
                continue
            readings = self.live.get(s.cgroup_id)
            if readings is None and self.emitted:
                new.setdefault(_key(s), []).append(s)
                continue
            base = self.baseline.get(s.cgroup_id, {}).get(_key(s), 0.0)
            self.live.setdefault(s.cgroup_id, {})[_key(s)] = s.value - base
        pod_now = {_key(s): s.value for s in pod_samples if s.kind is Kind.CUMULATIVE}
        for key, fresh in new.items():
            credited = self.dead.get(key, 0.0) + sum(
                r.get(key, 0.0) for r in self.live.values())
            counted = self.emitted.get(key, 0.0)
            p = pod_now.get(key)
            shortfall = 0.0 if p is None else counted - (p - credited - sum(x.value for x in fresh))
            for s in fresh:
                base = min(s.value, max(0.0, shortfall))
                shortfall -= base
                if base:
                    self.baseline.setdefault(s.cgroup_id, {})[key] = base
                self.live.setdefault(s.cgroup_id, {})[key] = s.value - base
        out: list[Sample] = []
        for s in container_samples:
            base = self.baseline.get(s.cgroup_id, {}).get(_key(s), 0.0) \
                if s.kind is Kind.CUMULATIVE else 0.0
            out.append(_with_value(s, s.value - base) if base else s)
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

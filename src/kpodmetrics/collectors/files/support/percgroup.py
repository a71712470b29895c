"""Loop shared by the per-cgroup collectors (diskio, memory, cpustat, pressure).

Targets are taken pod by pod (`pod_groups`): the pod-level cgroup first, then its
containers. Each cgroup's files are read and the bytes that exist go to the
collector's `samples_for`; the pod-level samples are then rewritten by the pod's
`PodLedger` into what none of its containers accounts for (see `podlevel`), so no
level ever counts a container twice. A vanished cgroup costs one error and ends that
cgroup's reading; any other failed file costs one error and only that file's metrics
for this cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from kpodmetrics.collectors.base import CollectContext
from kpodmetrics.collectors.files.support.collector import FileCollector
from kpodmetrics.collectors.files.support.files import Vanished, read_optional
from kpodmetrics.collectors.files.support.podlevel import PodLedger
from kpodmetrics.collectors.files.support.targets import pod_groups_memo
from kpodmetrics.families import Family
from kpodmetrics.pods.owner import CgroupRef
from kpodmetrics.samples import HistogramSample, Sample


class PerCgroupCollector(FileCollector):
    files: Sequence[str] = ()
    own_value: frozenset[Family] = frozenset()
    """Families that are not sums over the cgroup tree: the pod-level series reports the
    pod cgroup's own value instead of the remainder (docs/cgroup-signals.md)."""

    def __init__(self) -> None:
        self._ledgers: dict[str, PodLedger] = {}

    def collect(self, ctx: CollectContext) -> Iterable[Sample | HistogramSample]:
        self.begin_cycle()
        ledgers = self._ledgers
        out: list[Sample | HistogramSample] = []
        seen: dict[str, PodLedger] = {}
        for group in pod_groups_memo(ctx.targets, ctx.memo):
            pod = group.anchor if group.anchor.pod_level else None
            containers = [r for r in group.members if not r.pod_level]
            ledger = ledgers.get(group.key)
            if ledger is None or (pod is not None and ledger.pod_cgroup != pod.cgroup_id):
                ledger = PodLedger(pod.cgroup_id if pod is not None else 0)
            seen[group.key] = ledger
            pod_samples = self._read(pod, ctx) if pod is not None else []
            container_samples: list[Sample] = []
            for ref in containers:
                container_samples.extend(self._read(ref, ctx))
            ledger.retire_missing({r.cgroup_id for r in containers})
            out.extend(ledger.settle(pod_samples, container_samples, self.own_value))
        self._ledgers = seen  # pods no longer listed are forgotten
        return out

    def _read(self, ref: CgroupRef, ctx: CollectContext) -> list[Sample]:
        contents: dict[str, bytes] = {}
        seen = False  # the directory is there (one of its files was read or found missing)
        for fname in self.files:
            try:
                data = read_optional(ref.path, fname, dir_exists=seen)
            except Vanished:
                ctx.count_error(self.name)
                return []
            except OSError:
                ctx.count_error(self.name)
                continue
            seen = True
            if data is not None:
                contents[fname] = data
        return self.samples_for(ref, contents, ctx)

    def begin_cycle(self) -> None:
        """Hook for per-cycle caches."""

    def samples_for(
        self, ref: CgroupRef, contents: dict[str, bytes], ctx: CollectContext
    ) -> list[Sample]:
        raise NotImplementedError

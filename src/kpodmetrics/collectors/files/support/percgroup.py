"""Loop shared by the per-cgroup collectors (diskio, memory, cpustat, pressure).

For each cgroup chosen by `per_cgroup_targets`, read the collector's files and hand
the bytes that exist to its `samples_for` method. A vanished cgroup costs one error
and ends that cgroup's reading; any other failed file costs one error and only that
file's metrics for this cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from kpodmetrics.collectors.base import CollectContext
from kpodmetrics.collectors.files.support.collector import FileCollector
from kpodmetrics.collectors.files.support.files import Vanished, read_optional
from kpodmetrics.collectors.files.support.targets import per_cgroup_targets
from kpodmetrics.pods.owner import CgroupRef
from kpodmetrics.samples import HistogramSample, Sample


class PerCgroupCollector(FileCollector):
    files: Sequence[str] = ()

    def collect(self, ctx: CollectContext) -> Iterable[Sample | HistogramSample]:
        self.begin_cycle()
        out: list[Sample | HistogramSample] = []
        for ref in per_cgroup_targets(ctx.targets):
            contents: dict[str, bytes] = {}
            try:
                for fname in self.files:
                    try:
                        data = read_optional(ref.path, fname)
                    except Vanished:
                        raise
                    except OSError:
                        ctx.count_error(self.name)
                        continue
                    if data is not None:
                        contents[fname] = data
            except Vanished:
                ctx.count_error(self.name)
                continue
            out.extend(self.samples_for(ref, contents, ctx))
        return out

    def begin_cycle(self) -> None:
        """Hook for per-cycle caches."""

    def samples_for(
        self, ref: CgroupRef, contents: dict[str, bytes], ctx: CollectContext
    ) -> list[Sample]:
        raise NotImplementedError

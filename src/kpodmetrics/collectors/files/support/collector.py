"""Common frame of the cgroup-file collectors: no BPF, nothing to start or close."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from kpodmetrics.bpf.variants import SignalState
from kpodmetrics.collectors.base import CollectContext, MapHealth, ProgramStatus
from kpodmetrics.families import Family
from kpodmetrics.samples import HistogramSample, Sample


class FileCollector:
    """Base class: subclasses set `name`, `families` and implement `collect`."""

    name: str = ""
    families: Sequence[Family] = ()

    def start(self) -> None:
        """Nothing to load: absent files are handled per cycle as "not available"."""

    def collect(self, ctx: CollectContext) -> Iterable[Sample | HistogramSample]:
        raise NotImplementedError

    def close(self) -> None:
        """Nothing held between cycles."""

    def programs(self) -> Sequence[ProgramStatus]:
        return []

    def map_health(self) -> Sequence[MapHealth]:
        return []

    def signal_states(self) -> Sequence[SignalState]:
        """No kernel signals: a file that is absent is handled per cycle."""
        return []

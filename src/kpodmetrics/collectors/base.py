"""The collector protocol: start once, collect every cycle, close at shutdown.

`start` and `collect` are blocking (BPF loads, map reads, file reads); the service
runs them in worker threads, never on the event loop. A collector that cannot start
raises `CollectorUnavailable` with a reason; the service reports it as
`kpod_collector_up{collector} 0` and carries on without it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kpodmetrics.bpf.variants import SignalState
from kpodmetrics.families import Family
from kpodmetrics.pods.owner import CgroupRef
from kpodmetrics.samples import AnySample


class CollectorUnavailable(RuntimeError):
    """This collector cannot run here; the message says why and what would fix it."""


@dataclass(slots=True)
class CollectContext:
    """What a collector may use during one cycle."""

    targets: Sequence[CgroupRef]
    """cgroups to read files for (pods' cgroups, or every cgroup standalone)."""
    cgroup_root: str
    proc_root: str = "/proc"
    errors: dict[str, int] = field(default_factory=dict)
    """Per-collector count of skipped inputs this cycle (kpod_cgroup_read_errors_total)."""
    memo: dict[tuple[str, str], Any] = field(default_factory=dict)
    """Readings several collectors of one cycle share, (kind, path) -> result: iface and
    fs both look for a pod's processes, and one cgroup.procs read and one directory
    listing per cgroup and cycle serve both (collectors/files/support/targets.py). Shared
    by every collector's copy of the context, dropped with the cycle."""

    def count_error(self, collector: str, n: int = 1) -> None:
        self.errors[collector] = self.errors.get(collector, 0) + n


@dataclass(frozen=True, slots=True)
class MapHealth:
    """Health of one BPF metric map, read each cycle."""

    map: str
    capacity: int | None
    """max_entries; None for task/socket storage, which has one entry per task or socket
    and no capacity to run out of."""
    entries: int | None
    """Entries read (and reset) in the last cycle; None for scratch maps that are not read."""
    entries_written: int
    update_errors: int
    evicted_at_least: int = 0
    reaped: int = 0
    """Scratch-map entries of tasks that are gone, deleted by userspace (so far)."""
    """Entries the LRU dropped before userspace read them: a lower bound (see collectors/ebpf/base.py)."""


@dataclass(frozen=True, slots=True)
class ProgramStatus:
    program: str
    attached: bool
    reason: str = ""


class Collector(Protocol):
    """A source of per-cgroup samples."""

    name: str
    families: Sequence[Family]

    def start(self) -> None:
        """Load/attach/open what is needed. Raise CollectorUnavailable if impossible."""
        ...

    def collect(self, ctx: CollectContext) -> Iterable[AnySample]:
        """Read once; return this cycle's samples. Blocking; runs in a worker thread."""
        ...

    def close(self) -> None:
        """Release everything (detach programs, close objects). Idempotent."""
        ...

    def programs(self) -> Sequence[ProgramStatus]:
        """BPF programs of this collector and their state (empty for file collectors)."""
        ...

    def map_health(self) -> Sequence[MapHealth]:
        """Health of the BPF metric maps after the last collect (empty for file collectors)."""
        ...

    def signal_states(self) -> Sequence[SignalState]:
        """Per declared kernel signal, the program variant feeding it or why none does
        (empty for file collectors); meaningful after start, also after a failed one."""
        ...

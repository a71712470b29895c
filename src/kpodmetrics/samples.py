"""What collectors hand to the metric state: values keyed by the cgroup that owns them.

Collectors never know pods. They report per cgroup id (the cgroup v2 directory inode,
the same number BPF reads from `kn->id`); the resolver turns ids into owners and the
series store turns samples into cumulative series.

Samples are values, never changed after they are made, but not `frozen` dataclasses:
a frozen dataclass sets each field through object.__setattr__, which made building one
3.4x slower (0.82 against 0.24 us, 7 fields, measured here), and a cycle at 1,000
cgroups builds some 40,000 of them. Nothing hashes a sample.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from kpodmetrics.families import Family

Labels = tuple[tuple[str, str], ...]
"""Extra labels of a sample (e.g. `(("syscall", "openat"),)`), in family label order."""


class Kind(enum.Enum):
    """How the store folds a scalar sample into its series."""

    DELTA = "delta"
    """An increment since the last read (BPF snap-and-reset maps)."""
    CUMULATIVE = "cumulative"
    """The kernel's own running total (io.stat, net/dev, cpu.stat): the store adds the
    difference to the previous reading of the same source; a drop is a reset."""
    GAUGE = "gauge"
    """A level: the last value wins."""


@dataclass(slots=True)
class Sample:
    """A scalar reading for one series of one cgroup."""

    family: Family
    cgroup_id: int
    value: float
    kind: Kind = Kind.DELTA
    labels: Labels = ()
    source: str = ""
    """Distinguishes several cumulative sources folding into one series (e.g. a
    network namespace read through different pids); empty for most collectors."""
    peer_key: str = ""
    """Owner key of a second owner the series names (the CPU holder, export/peers.py):
    the series also leaves the export when that owner is removed."""


@dataclass(slots=True)
class HistogramSample:
    """Log2-slot counts since the last read, plus their exact sum.

    Slot k counts values v (in the family's base unit before scaling, ns for
    latencies) with 2^(k-1) < v <= 2^k; slot 0 counts v <= 1; the last slot also
    holds everything larger than its lower edge (it maps to +Inf).
    """

    family: Family
    cgroup_id: int
    slots: tuple[int, ...]
    total: int
    labels: Labels = ()

    @property
    def count(self) -> int:
        return sum(self.slots)


@dataclass(slots=True)
class PeerSample:
    """A delta of one cgroup caused by another: the run-queue wait of `cgroup_id`'s
    tasks behind tasks of `peer_cgroup_id` (0: nobody, an idle CPU).

    The store names the peer with its owner's labels under the family's prefix
    (`holder_namespace`, ...), keeps the largest peers of each owner per cycle and
    folds the rest into one `__other__` peer (export/peers.py)."""

    family: Family
    cgroup_id: int
    peer_cgroup_id: int
    value: float


AnySample = Sample | HistogramSample | PeerSample
"""Everything a collector may hand over in one cycle."""

"""Cumulative series state: the one data model behind /metrics and OTLP.

Collectors hand over per-cgroup samples (deltas, kernel cumulative readings, gauge
levels, log2 histogram deltas). The store resolves each cgroup to its owner, folds
the sample into the owner's series and drops every series of an owner once the
resolver says it is gone. Nothing here is re-added: a kernel cumulative value moves
its series only by the difference to the previous reading of the same cgroup.

Levels (gauges) describe now, not the past: an owner's gauge series is the sum of
this cycle's readings of all its cgroups (nested container cgroups, every cgroup in
the unresolved aggregate), and a gauge series that got no reading this cycle leaves
the export (a dead container's last memory usage must not linger through its
back-off). Agent self-metric gauges keep the last value.

Start times (OTLP `start_time_unix_nano`, docs/export.md): a series created by a
delta starts at the previous collection (the interval its first delta covers); one
created by a kernel total starts at that first reading and is marked `reset_start`,
because its first value is the cgroup's whole unknown history: its first point is a
"true reset point" (start = time) for backends, not an increase.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from kpodmetrics.export.peers import DEFAULT_TOP_K, fold_peers
from kpodmetrics.families import Family
from kpodmetrics.pods.owner import Owner, Resolver
from kpodmetrics.samples import AnySample, HistogramSample, Kind, Labels, PeerSample, Sample

UNRESOLVED_KEY = "__unresolved__"
AGENT_KEY = "__agent__"
OVERFLOW_KEY = "__overflow__"
OVERFLOW_VALUE = "__overflow__"
"""Label value of the series that new series beyond the budget are folded into."""
T = TypeVar("T")
_RESOLVED, _IGNORED, _UNRESOLVED = 0, 1, 2
"""What `SeriesStore._resolve` found for a cgroup."""


@dataclass(slots=True)
class Series:
    """One exported series. `value` for counters and gauges; slots/total for histograms."""

    labels: Labels
    owner_key: str
    start_ns: int
    value: float = 0.0
    slots: list[int] = field(default_factory=list)
    total: float = 0.0
    cycle: int = -1
    """Gauges: the store cycle of the last reading (readings of one cycle are summed)."""
    reset_start: bool = False
    """Created by a kernel total: its first value holds history from before start_ns."""
    text: str | None = None
    """The exposition's text of `labels`, made at the first render and kept (labels never
    change): building it was a third of every render (export/promtext.py)."""

    @property
    def count(self) -> int:
        return sum(self.slots)


@dataclass(slots=True)
class ApplyStats:
    """What one `apply` did, for self-metrics."""

    applied: int = 0
    unresolved: int = 0
    ignored: int = 0
    dropped_unresolved: int = 0
    resets: int = 0


class SeriesStore:
    """Thread-safe store of cumulative series keyed by (family, labels).

    Cardinality budget: `max_series` bounds the owner series of all families together,
    `max_series_per_family` each family (0 = no limit). A new series beyond either is
    not created: its data is folded into that family's overflow series (every non-static
    label = "__overflow__") and the refusal is counted once per distinct series in
    `dropped()`. The redirection lasts as long as the owner, so the overflow counters
    stay monotonic and an owner's data never silently vanishes. Agent self-metrics are
    exempt: their cardinality is fixed by the code.
    """

    def __init__(
        self,
        static_labels: Labels = (),
        *,
        unresolved: str = "aggregate",
        unresolved_labels: Labels | None = None,
        tracker_ttl_cycles: int = 3,
        max_series: int = 0,
        max_series_per_family: int = 0,
        peer_top_k: int = DEFAULT_TOP_K,
    ) -> None:
        if unresolved not in ("aggregate", "drop"):
            raise ValueError(f"unresolved must be 'aggregate' or 'drop', not {unresolved!r}")
        if max_series < 0 or max_series_per_family < 0:
            raise ValueError("series budgets must be >= 0 (0 = unlimited)")
        self.max_series = max_series
        self.peer_top_k = peer_top_k
        """Peers (CPU holders) kept per owner per cycle; the rest fold into __other__."""
        self.max_series_per_family = max_series_per_family
        self._owner_total = 0
        self._family_owned: dict[str, int] = {}
        # (family, labels) refused by the budget -> the overflow labels it folds into
        self._folded: dict[tuple[str, Labels], Labels] = {}
        self._folded_by_owner: dict[str, list[tuple[str, Labels]]] = {}
        self._dropped: dict[str, int] = {}
        self._static = static_labels
        self._unresolved_policy = unresolved
        self._unresolved_labels = unresolved_labels
        self._series: dict[str, dict[Labels, Series]] = {}
        self._by_owner: dict[str, set[tuple[str, Labels]]] = {}
        # last raw reading of cumulative sources: (family, cgroup, labels, source) -> (raw, cycle)
        self._raw: dict[tuple[str, int, Labels, str], tuple[float, int]] = {}
        self._tracker_ttl = tracker_ttl_cycles
        self._cycle = 0
        self._created_ns = time.time_ns()
        self.collected_ns = 0
        """Wall time of the last `apply` (the time of the exported points); 0 before."""
        self._declared: set[str] = set()
        # owner gauge series read in the last cycle: the ones not read again go stale
        self._levels: set[tuple[str, Labels]] = set()
        self._families: dict[str, Family] = {}
        self._lock = threading.Lock()

    # -- writing -------------------------------------------------------------------

    def apply(
        self, samples: Iterable[AnySample], resolver: Resolver
    ) -> ApplyStats:
        """Fold one cycle's samples into the series; then drop removed owners.
        Pair samples (PeerSample) are folded per owner first (export/peers.py)."""
        peers: list[PeerSample] = []
        plain: list[Sample | HistogramSample] = []
        for s in samples:
            if isinstance(s, PeerSample):
                peers.append(s)
            else:
                plain.append(s)
        if peers:
            plain += fold_peers(peers, resolver, self.peer_top_k)
        return self._apply(plain, resolver)

    def _apply(self, samples: list[Sample | HistogramSample], resolver: Resolver) -> ApplyStats:
        """The per-sample loop is the store's hot path (some 30,000 samples a cycle at
        1,000 cgroups): each cgroup is resolved once per call, and a sample whose series
        exists is folded without the lookups that creating one needs."""
        stats = ApplyStats()
        now = time.time_ns()
        owner_labels = resolver.owner_label_names
        unresolved_owner = Owner(
            UNRESOLVED_KEY,
            self._unresolved_labels
            if self._unresolved_labels is not None
            else tuple((n, "__unresolved__" if i == 0 else "") for i, n in enumerate(owner_labels)),
        )
        drop_unresolved = self._unresolved_policy == "drop"
        # cgroup id -> (owner or None, what to count, static + owner labels): once per call
        owners: dict[int, tuple[Owner | None, int, Labels]] = {}
        checked: set[int] = set()  # families whose name this call matched to the store's
        levels: set[tuple[str, Labels]] = set()
        static = self._static
        series_of = self._series
        with self._lock:
            self._cycle += 1
            # a delta read now covers the time since the previous collection
            since = self.collected_ns or self._created_ns
            for s in samples:
                cg = s.cgroup_id
                got = owners.get(cg)
                if got is None:
                    found, outcome = self._resolve(resolver, cg, unresolved_owner,
                                                   drop_unresolved)
                    owners[cg] = got = (found, outcome,
                                        static + found.labels if found is not None else ())
                owner, outcome, base = got
                if outcome != _RESOLVED:
                    if outcome == _IGNORED:  # known, deliberately not exported
                        stats.ignored += 1
                        continue
                    stats.unresolved += 1
                    if owner is None:
                        stats.dropped_unresolved += 1
                        continue
                assert owner is not None
                family = s.family
                labels = base + s.labels
                per_family = series_of.get(family.name)
                series = per_family.get(labels) if per_family is not None else None
                if series is None or id(family) not in checked:
                    series = self._get(family, labels, owner.key,
                                       now if getattr(s, "kind", None) is Kind.CUMULATIVE
                                       else since)
                    checked.add(id(family))
                if isinstance(s, HistogramSample):
                    self._fold_histogram(series, s)
                else:
                    self._fold_scalar(series, s, stats, sum_levels=True)
                    if s.peer_key and series.owner_key != OVERFLOW_KEY:  # leaves with its holder
                        self._by_owner.setdefault(s.peer_key, set()).add(
                            (family.name, series.labels))
                    if s.kind is Kind.GAUGE:
                        levels.add((family.name, series.labels))
                stats.applied += 1
            for key in self._levels - levels:
                self._drop_series_locked(*key)
            self._levels = levels
            for gone in resolver.drain_removed():
                self._drop_owner_locked(gone.key)
            self._prune_trackers_locked()
            self.collected_ns = now
        return stats

    @staticmethod
    def _resolve(resolver: Resolver, cgroup_id: int, unresolved_owner: Owner,
                 drop_unresolved: bool) -> tuple[Owner | None, int]:
        """(owner, outcome) of a cgroup: its owner; none, ignored; the unresolved owner,
        or none when unresolved samples are dropped."""
        owner = resolver.resolve(cgroup_id)
        if owner is not None:
            return owner, _RESOLVED
        if resolver.ignored(cgroup_id):
            return None, _IGNORED
        return (None if drop_unresolved else unresolved_owner), _UNRESOLVED

    def apply_agent(self, samples: Iterable[Sample | HistogramSample]) -> None:
        """Fold agent self-metrics (no owner labels; never dropped with a pod). Their
        totals count from the agent's start, which is their start time."""
        now = self._created_ns
        scratch = ApplyStats()
        with self._lock:
            for s in samples:
                family = s.family
                labels = self._static + s.labels
                if isinstance(s, HistogramSample):
                    self._add_histogram(family, labels, AGENT_KEY, s, now)
                else:
                    self._add_scalar(family, labels, AGENT_KEY, s, now, scratch)

    def _get(self, family: Family, labels: Labels, owner_key: str, start_ns: int) -> Series:
        known = self._families.setdefault(family.name, family)
        if known is not family and known != family:
            raise ValueError(f"two different families are named {family.name}")
        per_family = self._series.setdefault(family.name, {})
        series = per_family.get(labels)
        if series is not None:
            return series
        if owner_key not in (AGENT_KEY, OVERFLOW_KEY):
            key = (family.name, labels)
            folded = self._folded.get(key)
            if folded is None and self._over_budget(family.name):
                n_static = len(self._static)
                folded = labels[:n_static] + tuple((k, OVERFLOW_VALUE) for k, _ in labels[n_static:])
                self._folded[key] = folded
                self._folded_by_owner.setdefault(owner_key, []).append(key)
                self._dropped[family.name] = self._dropped.get(family.name, 0) + 1
            if folded is not None:
                return self._get(family, folded, OVERFLOW_KEY, start_ns)
            self._owner_total += 1
            self._family_owned[family.name] = self._family_owned.get(family.name, 0) + 1
        series = Series(labels=labels, owner_key=owner_key, start_ns=start_ns)
        per_family[labels] = series
        self._by_owner.setdefault(owner_key, set()).add((family.name, labels))
        return series

    def _over_budget(self, family_name: str) -> bool:
        if self.max_series and self._owner_total >= self.max_series:
            return True
        return bool(self.max_series_per_family
                    and self._family_owned.get(family_name, 0) >= self.max_series_per_family)

    def _add_scalar(
        self,
        family: Family,
        labels: Labels,
        owner_key: str,
        s: Sample,
        start_ns: int,
        stats: ApplyStats,
    ) -> Series:
        series = self._get(family, labels, owner_key, start_ns)
        self._fold_scalar(series, s, stats)
        return series

    def _fold_scalar(self, series: Series, s: Sample, stats: ApplyStats, *,
                     sum_levels: bool = False) -> None:
        if s.kind is Kind.GAUGE:
            if sum_levels and series.cycle == self._cycle:
                series.value += s.value  # another cgroup of the same owner this cycle
            else:
                series.value = s.value
            series.cycle = self._cycle
        elif s.kind is Kind.DELTA:
            if s.value > 0:
                series.value += s.value
        else:  # CUMULATIVE
            key = (s.family.name, s.cgroup_id, s.labels, s.source)
            prev = self._raw.get(key)
            if prev is None or s.value < prev[0]:
                if prev is not None:
                    stats.resets += 1
                elif (series.value == 0 and not series.reset_start
                      and series.owner_key != AGENT_KEY):
                    series.reset_start = True  # first value: a lifetime of unknown start
                delta = s.value
            else:
                delta = s.value - prev[0]
            self._raw[key] = (s.value, self._cycle)
            series.value += max(delta, 0.0)

    def _add_histogram(
        self, family: Family, labels: Labels, owner_key: str, s: HistogramSample, start_ns: int
    ) -> None:
        self._fold_histogram(self._get(family, labels, owner_key, start_ns), s)

    @staticmethod
    def _fold_histogram(series: Series, s: HistogramSample) -> None:
        slots = series.slots
        if len(slots) < len(s.slots):
            slots.extend([0] * (len(s.slots) - len(slots)))
        for i, c in enumerate(s.slots):
            if c:
                slots[i] += c
        series.total += s.total

    def _prune_trackers_locked(self) -> None:
        horizon = self._cycle - self._tracker_ttl
        stale = [k for k, (_, cyc) in self._raw.items() if cyc < horizon]
        for k in stale:
            del self._raw[k]

    def _drop_owner_locked(self, owner_key: str) -> None:
        if owner_key in (AGENT_KEY, OVERFLOW_KEY):
            return
        for family_name, labels in self._by_owner.pop(owner_key, ()):
            self._unlink_locked(family_name, labels)
        for key in self._folded_by_owner.pop(owner_key, ()):
            self._folded.pop(key, None)

    def _drop_series_locked(self, family_name: str, labels: Labels) -> None:
        """One series out of the export (a gauge nobody read this cycle)."""
        series = self._series.get(family_name, {}).get(labels)
        if series is None:
            return
        keys = self._by_owner.get(series.owner_key)
        if keys is not None:
            keys.discard((family_name, labels))
            if not keys:
                del self._by_owner[series.owner_key]
        self._unlink_locked(family_name, labels)

    def _unlink_locked(self, family_name: str, labels: Labels) -> None:
        per_family = self._series.get(family_name)
        if per_family is None:
            return
        series = per_family.pop(labels, None)
        if series is None:
            return
        if series.owner_key not in (AGENT_KEY, OVERFLOW_KEY):
            self._owner_total -= 1
            left = self._family_owned.get(family_name, 1) - 1
            if left:
                self._family_owned[family_name] = left
            else:
                self._family_owned.pop(family_name, None)
        if not per_family:
            del self._series[family_name]

    # -- reading -------------------------------------------------------------------

    def declare(self, families: Iterable[Family]) -> None:
        """Families with a live source: listed (HELP/TYPE) even before their first
        series, so a dashboard can tell "nothing happened" from "not collected" (a
        family nothing feeds is never declared: it must not look like zero events)."""
        with self._lock:
            for family in families:
                self._families.setdefault(family.name, family)
                self._declared.add(family.name)

    def snapshot(self) -> list[tuple[Family, list[Series]]]:
        """A consistent copy of every family's series (copies, safe to use unlocked);
        declared families without series come with an empty list."""
        return self.read_live(lambda view: [
            (family, [Series(s.labels, s.owner_key, s.start_ns, s.value, list(s.slots),
                             s.total, s.cycle, s.reset_start) for s in rows])
            for family, rows in view])

    def read_live(self, reader: Callable[[list[tuple[Family, list[Series]]]], T]) -> T:
        """`reader` over the live series, with the store locked while it runs.

        For the exposition, which only reads and is done before the next update: a
        `snapshot` copies every series (a new object and slot list each: 9 % of the
        agent's CPU at 1,000 cgroups, py-spy), this lends them. `reader` must not keep
        the rows or call back into the store."""
        with self._lock:
            view = [(self._families[name], list(self._series.get(name, {}).values()))
                    for name in sorted(self._series.keys() | self._declared)]
            return reader(view)

    def series_counts(self) -> dict[str, int]:
        with self._lock:
            return {name: len(rows) for name, rows in self._series.items()}

    def dropped(self) -> dict[str, int]:
        """Distinct series refused by the budget so far, per family (monotonic)."""
        with self._lock:
            return dict(self._dropped)

    def owner_series(self) -> int:
        """Series of owners (pods/cgroups) that count against the budget."""
        with self._lock:
            return self._owner_total

    def __iter__(self) -> Iterator[tuple[str, Labels]]:
        with self._lock:
            keys = [(n, lab) for n, rows in self._series.items() for lab in rows]
        return iter(keys)

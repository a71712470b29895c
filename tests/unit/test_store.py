"""Series store semantics: deltas add, kernel cumulatives never re-add, resets, removal."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from kpodmetrics import families
from kpodmetrics.export.store import SeriesStore
from kpodmetrics.families import Family, FamilyType
from kpodmetrics.pods.owner import CgroupRef, Owner
from kpodmetrics.samples import HistogramSample, Kind, Sample

C = Family("kpod_test_events_total", FamilyType.COUNTER, "test counter")
G = Family("kpod_test_level_bytes", FamilyType.GAUGE, "test gauge", unit="By")
H = Family("kpod_test_latency_seconds", FamilyType.HISTOGRAM, "test histogram", unit="s",
           bucket_exponents=(1, 3), scale=1e-9)
families.register(C, G, H)


class FakeResolver:
    owner_label_names = ("cgroup",)

    def __init__(self, ids: dict[int, str]) -> None:
        self.ids = ids
        self.removed: list[Owner] = []

    def refresh(self) -> None: ...

    def resolve(self, cgroup_id: int) -> Owner | None:
        path = self.ids.get(cgroup_id)
        return None if path is None else Owner(path, (("cgroup", path),))

    def targets(self) -> Sequence[CgroupRef]:
        return []

    def ignored(self, cgroup_id: int) -> bool:

        return False


    def drain_removed(self) -> list[Owner]:
        out, self.removed = self.removed, []
        return out


def value(store: SeriesStore, family: str, **labels: str) -> float:
    for fam, rows in store.snapshot():
        if fam.name == family:
            for s in rows:
                if dict(s.labels) == labels:
                    return s.value
    raise KeyError((family, labels))


def test_deltas_accumulate() -> None:
    r = FakeResolver({1: "/a"})
    store = SeriesStore()
    store.apply([Sample(C, 1, 3)], r)
    store.apply([Sample(C, 1, 4)], r)
    assert value(store, C.name, cgroup="/a") == 7


@given(st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=30))
def test_cumulative_is_never_re_added(increments: list[int]) -> None:
    """A kernel running total read every cycle exports exactly that total."""
    r = FakeResolver({1: "/a"})
    store = SeriesStore()
    total = 0
    for inc in increments:
        total += inc
        store.apply([Sample(C, 1, total, Kind.CUMULATIVE)], r)
    assert value(store, C.name, cgroup="/a") == total


def test_cumulative_reset_counts_from_zero_again() -> None:
    r = FakeResolver({1: "/a"})
    store = SeriesStore()
    resets = []
    for raw in (100, 150, 20, 50):  # the source restarted between 150 and 20
        resets.append(store.apply([Sample(C, 1, raw, Kind.CUMULATIVE)], r).resets)
    assert value(store, C.name, cgroup="/a") == 150 + 50
    assert resets == [0, 0, 1, 0]  # counted in the cycle it happened, once


def test_cumulative_survives_a_missed_cycle() -> None:
    """A file unreadable for one cycle must not make the next reading count twice."""
    r = FakeResolver({1: "/a"})
    store = SeriesStore()
    store.apply([Sample(C, 1, 100, Kind.CUMULATIVE)], r)
    store.apply([], r)
    store.apply([Sample(C, 1, 130, Kind.CUMULATIVE)], r)
    assert value(store, C.name, cgroup="/a") == 130


def test_two_cgroups_of_one_owner_fold_into_one_series() -> None:
    """A restarted container (new cgroup id, same owner) continues its counter."""
    r = FakeResolver({1: "/a", 2: "/a"})
    store = SeriesStore()
    store.apply([Sample(C, 1, 10, Kind.CUMULATIVE)], r)
    store.apply([Sample(C, 2, 5, Kind.CUMULATIVE)], r)
    assert value(store, C.name, cgroup="/a") == 15


def test_gauges_take_the_last_value() -> None:
    r = FakeResolver({1: "/a"})
    store = SeriesStore()
    store.apply([Sample(G, 1, 5, Kind.GAUGE)], r)
    store.apply([Sample(G, 1, 2, Kind.GAUGE)], r)
    assert value(store, G.name, cgroup="/a") == 2


def test_histograms_add_slots_and_sums() -> None:
    r = FakeResolver({1: "/a"})
    store = SeriesStore()
    store.apply([HistogramSample(H, 1, (1, 2, 0, 0), 10)], r)
    store.apply([HistogramSample(H, 1, (0, 1, 3, 1), 90)], r)
    (_fam, rows), = [x for x in store.snapshot() if x[0].name == H.name]
    assert rows[0].slots == [1, 3, 3, 1]
    assert rows[0].total == 100
    assert rows[0].count == 8


def test_removed_owner_loses_every_series() -> None:
    r = FakeResolver({1: "/a", 2: "/b"})
    store = SeriesStore()
    store.apply([Sample(C, 1, 1), Sample(G, 1, 1, Kind.GAUGE), Sample(C, 2, 1)], r)
    r.removed.append(Owner("/a", (("cgroup", "/a"),)))
    store.apply([], r)
    assert {lab for _, lab in store} == {(("cgroup", "/b"),)}


def test_unresolved_is_aggregated_or_dropped() -> None:
    r = FakeResolver({})
    agg = SeriesStore()
    stats = agg.apply([Sample(C, 9, 2), Sample(C, 8, 3)], r)
    assert stats.unresolved == 2
    assert value(agg, C.name, cgroup="__unresolved__") == 5
    drop = SeriesStore(unresolved="drop")
    stats = drop.apply([Sample(C, 9, 2)], r)
    assert stats.dropped_unresolved == 1 and list(drop) == []


def test_declared_families_are_listed_before_their_first_series() -> None:
    from kpodmetrics.export.promtext import render

    store = SeriesStore()
    store.declare([C])
    text = render(store.snapshot()).decode()
    assert f"# TYPE {C.name} counter\n" in text
    assert not [ln for ln in text.splitlines() if ln.startswith(C.name)]
    store.apply([Sample(C, 1, 2)], FakeResolver({1: "/a"}))
    assert f'{C.name}{{cgroup="/a"}} 2.0' in render(store.snapshot()).decode()


def test_ignored_cgroups_go_to_no_series_not_even_unresolved() -> None:
    class IgnoringResolver(FakeResolver):
        def ignored(self, cgroup_id: int) -> bool:
            return cgroup_id == 7

    store = SeriesStore()
    stats = store.apply([Sample(C, 7, 1), Sample(C, 8, 1)], IgnoringResolver({}))
    assert (stats.ignored, stats.unresolved) == (1, 1)
    assert value(store, C.name, cgroup="__unresolved__") == 1

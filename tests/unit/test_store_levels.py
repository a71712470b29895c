"""Gauges through the real SeriesStore: a level is what the owner's cgroups read this
cycle, summed; a series nobody read this cycle is not exported.

Oracle: the readings the test hands in (independent of the store)."""

from __future__ import annotations

from kpodmetrics.export.store import SeriesStore
from kpodmetrics.pods.owner import Owner
from kpodmetrics.samples import Kind, Sample

from .test_store import C, FakeResolver, G


def levels(store: SeriesStore) -> dict[str, float]:
    return {dict(s.labels)["cgroup"]: s.value
            for fam, rows in store.snapshot() if fam.name == G.name for s in rows}


def gauge(cgroup_id: int, value: float) -> Sample:
    return Sample(G, cgroup_id, value, Kind.GAUGE)


def test_levels_of_an_owners_cgroups_are_summed_every_cycle() -> None:
    # cgroups 1 and 2 are one owner (a container and its nested cgroup)
    r = FakeResolver({1: "/pod/ctr", 2: "/pod/ctr", 3: "/pod/other"})
    store = SeriesStore()
    store.apply([gauge(1, 3), gauge(2, 4), gauge(3, 10)], r)
    assert levels(store) == {"/pod/ctr": 7, "/pod/other": 10}
    store.apply([gauge(1, 5), gauge(2, 1), gauge(3, 10)], r)
    assert levels(store) == {"/pod/ctr": 6, "/pod/other": 10}  # not 7 + 6, not last-wins


def test_unresolved_aggregate_sums_its_cgroups() -> None:
    r = FakeResolver({})
    store = SeriesStore()
    store.apply([gauge(8, 2), gauge(9, 5)], r)
    assert levels(store) == {"__unresolved__": 7}


def test_a_gauge_not_read_this_cycle_is_not_exported() -> None:
    r = FakeResolver({1: "/pod/ctr", 2: "/pod/ctr", 3: "/pod/dead"})
    store = SeriesStore(max_series=10)
    store.apply([gauge(1, 3), gauge(2, 4), gauge(3, 64 << 20)], r)
    store.apply([gauge(1, 3)], r)  # the dead container's cgroup was not read
    assert levels(store) == {"/pod/ctr": 3}
    assert store.owner_series() == 1  # the budget forgets it too
    store.apply([], r)
    assert levels(store) == {}
    assert store.owner_series() == 0
    store.apply([gauge(3, 1)], r)  # read again: exported again, with the new level
    assert levels(store) == {"/pod/dead": 1}


def test_counters_of_the_same_owner_are_not_dropped_with_its_gauges() -> None:
    r = FakeResolver({1: "/a"})
    store = SeriesStore()
    store.apply([gauge(1, 3), Sample(C, 1, 2)], r)
    store.apply([], r)
    assert levels(store) == {}
    assert [dict(s.labels) for fam, rows in store.snapshot()
            if fam.name == "kpod_test_events_total" for s in rows] == [{"cgroup": "/a"}]
    r.removed.append(Owner("/a", (("cgroup", "/a"),)))
    store.apply([], r)
    assert store.owner_series() == 0


def test_agent_gauges_keep_their_last_value() -> None:
    store = SeriesStore()
    store.apply_agent([Sample(G, 0, 4, Kind.GAUGE)])
    store.apply([], FakeResolver({}))
    store.apply_agent([Sample(G, 0, 5, Kind.GAUGE)])
    store.apply_agent([Sample(G, 0, 6, Kind.GAUGE)])
    rows = [s.value for fam, rows in store.snapshot() if fam.name == G.name for s in rows]
    assert rows == [6]

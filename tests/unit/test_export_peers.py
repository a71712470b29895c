"""Holder series: pairs of cgroups folded per owner pair, top k per waiter per cycle.

Inputs are hand-made pairs with known sums; the checks are what an SRE reads off the
export: the largest holders by name, everything else in __other__, idle CPUs apart,
node processes as __host__, and per waiter the holders always adding up to the wait.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from kpodmetrics.collectors.ebpf.runqueue import HOLDER
from kpodmetrics.export.peers import fold_peers
from kpodmetrics.export.store import SeriesStore
from kpodmetrics.pods.owner import CgroupRef, Owner
from kpodmetrics.samples import PeerSample

K8S = ("namespace", "pod", "container")


class PodResolver:
    """cgroup id -> (namespace, pod, container); ids in `host` are known non-pods."""

    owner_label_names = K8S

    def __init__(self, ids: dict[int, tuple[str, str, str]], host: set[int]) -> None:
        self.ids, self.host = ids, host
        self.removed: list[Owner] = []

    def refresh(self) -> None: ...

    def resolve(self, cgroup_id: int) -> Owner | None:
        o = self.ids.get(cgroup_id)
        return None if o is None else Owner("/".join(o), tuple(zip(K8S, o, strict=True)))

    def ignored(self, cgroup_id: int) -> bool:
        return cgroup_id in self.host

    def targets(self) -> Sequence[CgroupRef]:
        return []

    def drain_removed(self) -> list[Owner]:
        out, self.removed = self.removed, []
        return out


def holders(store: SeriesStore, pod: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for fam, rows in store.snapshot():
        if fam is HOLDER:
            for s in rows:
                d = dict(s.labels)
                if d.get("pod") == pod:
                    out[f"{d['holder_namespace']}/{d['holder_pod']}"] = s.value
    return out


def resolver() -> PodResolver:
    ids = {10: ("shop", "web", "app"), 11: ("shop", "web", "app"),  # nested cgroups
           20: ("shop", "batch", "w")}
    ids.update({30 + i: ("ns", f"p{i}", "c") for i in range(8)})
    return PodResolver(ids, host={99})


def test_top_k_keeps_the_largest_holders_and_folds_the_rest_into_other() -> None:
    r = resolver()
    store = SeriesStore(peer_top_k=3)
    # web waits behind eight pods 1..8 s, plus 0.5 s on idle CPUs, 0.25 s behind the node
    pairs = [PeerSample(HOLDER, 10, 30 + i, float(i + 1)) for i in range(8)]
    pairs += [PeerSample(HOLDER, 11, 0, 0.5), PeerSample(HOLDER, 11, 99, 0.25)]
    store.apply(pairs, r)
    got = holders(store, "web")
    assert got == {"ns/p7": 8.0, "ns/p6": 7.0, "ns/p5": 6.0, "__idle__/__idle__": 0.5,
                   "__other__/__other__": 1 + 2 + 3 + 4 + 5 + 0.25}
    assert sum(got.values()) == pytest.approx(sum(range(1, 9)) + 0.75)


def test_pairs_of_one_owner_pair_add_up_across_cgroups_and_series_stay_monotonic() -> None:
    r = resolver()
    store = SeriesStore(peer_top_k=1)
    # two cgroups of web behind batch: one owner pair, 1 + 2 s
    store.apply([PeerSample(HOLDER, 10, 20, 1.0), PeerSample(HOLDER, 11, 20, 2.0),
                 PeerSample(HOLDER, 10, 30, 0.5)], r)
    assert holders(store, "web") == {"shop/batch": 3.0, "__other__/__other__": 0.5}
    # next cycle p0 is the larger: batch's cycle goes to __other__, batch keeps its total
    store.apply([PeerSample(HOLDER, 10, 20, 1.0), PeerSample(HOLDER, 10, 30, 4.0)], r)
    assert holders(store, "web") == {"shop/batch": 3.0, "ns/p0": 4.0,
                                     "__other__/__other__": 1.5}


def test_unknown_holders_and_waiters() -> None:
    r = resolver()
    store = SeriesStore()
    store.apply([PeerSample(HOLDER, 10, 12345, 1.0),  # holder nobody knows
                 PeerSample(HOLDER, 99, 20, 9.0),     # a node process waiting: not exported
                 PeerSample(HOLDER, 777, 20, 2.0)], r)  # unknown waiter: the aggregate
    assert holders(store, "web") == {"__unresolved__/__unresolved__": 1.0}
    agg = {dict(s.labels)["namespace"]: s.value for fam, rows in store.snapshot()
           if fam is HOLDER for s in rows if dict(s.labels).get("holder_pod") == "batch"}
    assert agg == {"__unresolved__": 2.0}


def test_fold_refuses_a_zero_k() -> None:
    with pytest.raises(ValueError, match="top_k must be at least 1"):
        fold_peers([], resolver(), 0)


def test_series_leave_with_their_holder() -> None:
    """A deleted holder pod does not stay on as a label of long-lived waiters."""
    r = resolver()
    store = SeriesStore()
    store.apply([PeerSample(HOLDER, 10, 20, 1.0), PeerSample(HOLDER, 10, 30, 2.0)], r)
    assert set(holders(store, "web")) == {"shop/batch", "ns/p0"}
    batch = r.resolve(20)
    assert batch is not None
    r.removed.append(batch)  # its grace period ended
    store.apply([], r)
    assert holders(store, "web") == {"ns/p0": 2.0}

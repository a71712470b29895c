"""KubernetesResolver over a directory tree shaped like a node's cgroups, with a fake clock.

Plain directories stand in for cgroups (the walk only needs names and inodes); the
oracle for every id is `os.stat(path).st_ino` of the directory the test made."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kpodmetrics.pods.podinfo import PodInfo, parse_pod
from kpodmetrics.pods.resolver import KubernetesResolver
from tests.k8s_api_server import make_pod


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cid(n: int) -> str:
    return f"{n:064x}"


def uid(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-{n:012x}"


class Node:
    """A fake cgroup root with systemd/containerd pod directories."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "system.slice" / "sshd.service").mkdir(parents=True)
        (root / "kubepods.slice" / "kubepods-burstable.slice").mkdir(parents=True)

    def pod_dir(self, pod_uid: str) -> Path:
        return (self.root / "kubepods.slice" / "kubepods-burstable.slice"
                / f"kubepods-burstable-pod{pod_uid.replace('-', '_')}.slice")

    def add(self, pod_uid: str, *container_ids: str) -> dict[str, int]:
        """Make the pod's directories; returns {"": pod id, container id: id}."""
        d = self.pod_dir(pod_uid)
        d.mkdir(exist_ok=True)
        ids = {"": os.stat(d).st_ino}
        for c in container_ids:
            cd = d / f"cri-containerd-{c}.scope"
            cd.mkdir()
            ids[c] = os.stat(cd).st_ino
        return ids

    def remove(self, pod_uid: str) -> None:
        d = self.pod_dir(pod_uid)
        for child in d.iterdir():
            child.rmdir()
        d.rmdir()


def info(n: int, containers: dict[str, str], ns: str = "default", **kw: object) -> PodInfo:
    pod = make_pod(f"pod-{n}", namespace=ns, uid=uid(n), containers=containers, **kw)  # type: ignore[arg-type]
    return parse_pod(pod, ("app",))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path)


def make(node: Node, clock: FakeClock, **kw: object) -> KubernetesResolver:
    return KubernetesResolver(str(node.root), label_keys=("app",), clock=clock, **kw)  # type: ignore[arg-type]


def labels(owner: object) -> dict[str, str]:
    return dict(owner.labels)  # type: ignore[attr-defined]


def test_pod_and_container_labels(node: Node, clock: FakeClock) -> None:
    ids = node.add(uid(1), cid(1), cid(2), cid(3))
    r = make(node, clock)
    r.upsert(info(1, {"app": cid(1)}, ns="shop", labels={"app": "web"},
                  init_containers={"setup": cid(2)}))
    r.refresh()
    assert r.owner_label_names == ("namespace", "pod", "container", "label_app")
    app = r.resolve(ids[cid(1)])
    assert app is not None and app.key == f"{uid(1)}/app"
    assert labels(app) == {"namespace": "shop", "pod": "pod-1", "container": "app",
                           "label_app": "web"}
    assert labels(r.resolve(ids[cid(2)]))["container"] == "setup"
    pod_level = r.resolve(ids[""])
    assert pod_level is not None and labels(pod_level)["container"] == ""
    # cid(3) has no status (the pause/sandbox container): the pod's, not a container's
    assert r.resolve(ids[cid(3)]) == pod_level
    targets = {t.cgroup_id: t for t in r.targets()}
    assert set(targets) == {ids[""], ids[cid(1)], ids[cid(2)]}
    assert targets[ids[""]].pod_level and targets[ids[""]].pod_key == uid(1)
    assert targets[ids[cid(1)]].path == str(node.pod_dir(uid(1)) / f"cri-containerd-{cid(1)}.scope")


def test_non_pod_and_excluded_namespace_are_ignored_not_unresolved(
    node: Node, clock: FakeClock
) -> None:
    ids = node.add(uid(1), cid(1))
    r = make(node, clock, exclude_namespaces=("kube-*",))
    r.upsert(info(1, {"c": cid(1)}, ns="kube-system"))
    r.refresh()
    sshd = os.stat(node.root / "system.slice" / "sshd.service").st_ino
    for i in (sshd, ids[""], ids[cid(1)]):
        assert r.resolve(i) is None
        assert r.ignored(i)
    assert r.stats.unresolved_lookups == 0
    assert r.stats.ignored_lookups == 3
    assert r.targets() == []


def test_include_list(node: Node, clock: FakeClock) -> None:
    a, b = node.add(uid(1)), node.add(uid(2))
    r = make(node, clock, namespaces=("team-a",))
    r.upsert(info(1, {}, ns="team-a"))
    r.upsert(info(2, {}, ns="team-b"))
    r.refresh()
    assert r.resolve(a[""]) is not None
    assert r.resolve(b[""]) is None and r.ignored(b[""])


def test_unknown_id_rewalk_is_rate_limited_and_misses_cached(
    node: Node, clock: FakeClock
) -> None:
    r = make(node, clock, rewalk_interval=1.0)
    r.upsert(info(1, {"c": cid(1)}))
    r.refresh()
    walks = r.stats.walks
    ids = node.add(uid(1), cid(1))  # the container starts after the walk
    # within the rate limit: no walk, the id is unresolved and cached as a miss
    assert r.resolve(ids[cid(1)]) is None
    assert r.stats.walks == walks
    clock.now += 1.0
    assert r.resolve(99999999) is None  # a truly unknown id triggers the (allowed) walk
    assert r.stats.walks == walks + 1
    # the walk found the container; the earlier miss was cleared by it
    owner = r.resolve(ids[cid(1)])
    assert owner is not None and labels(owner)["container"] == "c"
    assert r.resolve(99999999) is None  # cached miss: no further walk
    assert r.stats.walks == walks + 1
    assert r.unresolved_total == 3


def test_pod_change_triggers_walk_on_refresh(node: Node, clock: FakeClock) -> None:
    r = make(node, clock, full_walk_interval=3600)
    r.upsert(info(1, {}))
    r.refresh()
    walks = r.stats.walks
    r.refresh()
    assert r.stats.walks == walks  # nothing changed, no walk
    ids = node.add(uid(1), cid(7))
    r.upsert(info(1, {"late": cid(7)}))  # status now carries the container id
    r.refresh()
    assert r.stats.walks == walks + 1
    assert labels(r.resolve(ids[cid(7)]))["container"] == "late"


def test_grace_period_then_drain(node: Node, clock: FakeClock) -> None:
    ids = node.add(uid(1), cid(1))
    r = make(node, clock, grace_seconds=5.0)
    r.upsert(info(1, {"c": cid(1)}))
    r.refresh()
    pod_owner, c_owner = r.resolve(ids[""]), r.resolve(ids[cid(1)])
    r.delete(uid(1))
    node.remove(uid(1))
    clock.now += 4.9
    r.refresh()  # re-walks (the tree changed); the pod is still in grace
    assert r.drain_removed() == []
    # kernel data read in the window is still attributed, by id from the last walk
    # that saw it; the directories are gone, so only the owners matter now
    assert r.targets() == []
    clock.now += 0.1
    r.refresh()
    drained = r.drain_removed()
    assert {o.key for o in drained} == {pod_owner.key, c_owner.key}  # type: ignore[union-attr]
    assert r.drain_removed() == []
    assert r.sizes()["grace"] == 0 and r.sizes()["pods"] == 0


def test_attributed_during_grace_even_before_rewalk(node: Node, clock: FakeClock) -> None:
    ids = node.add(uid(1), cid(1))
    r = make(node, clock, grace_seconds=5.0)
    r.upsert(info(1, {"c": cid(1)}))
    r.refresh()
    r.delete(uid(1))
    clock.now += 2
    owner = r.resolve(ids[cid(1)])
    assert owner is not None and labels(owner)["container"] == "c"
    clock.now += 3
    r.refresh()
    assert r.resolve(ids[cid(1)]) is None
    assert len(r.drain_removed()) == 1


def test_re_add_during_grace_keeps_series(node: Node, clock: FakeClock) -> None:
    ids = node.add(uid(1), cid(1))
    r = make(node, clock, grace_seconds=5.0)
    r.upsert(info(1, {"c": cid(1)}))
    r.refresh()
    before = r.resolve(ids[cid(1)])
    r.delete(uid(1))
    clock.now += 3
    r.upsert(info(1, {"c": cid(1)}))  # e.g. a re-list shows it still exists
    clock.now += 10
    r.refresh()
    assert r.drain_removed() == []
    assert r.resolve(ids[cid(1)]) == before


def test_lru_cap_drains_evicted_pod_at_once(node: Node, clock: FakeClock) -> None:
    made = [node.add(uid(n)) for n in (1, 2, 3)]
    r = make(node, clock, grace_seconds=60.0, grace_max_entries=2)
    for n in (1, 2, 3):
        r.upsert(info(n, {}))
    r.refresh()
    owners = [r.resolve(m[""]) for m in made]
    r.delete(uid(1))
    r.delete(uid(2))
    assert r.resolve(made[0][""]) == owners[0]  # touch pod 1: pod 2 is now LRU
    r.delete(uid(3))
    assert r.drain_removed() == [owners[1]]
    assert r.stats.grace_evicted == 1
    assert r.resolve(made[1][""]) is None
    assert r.resolve(made[0][""]) == owners[0]


def test_label_change_retires_old_owner(node: Node, clock: FakeClock) -> None:
    ids = node.add(uid(1))
    r = make(node, clock)
    r.upsert(info(1, {}, labels={"app": "v1"}))
    r.refresh()
    old = r.resolve(ids[""])
    r.upsert(info(1, {}, labels={"app": "v2"}))
    new = r.resolve(ids[""])
    assert old is not None and new is not None
    assert labels(new)["label_app"] == "v2" and new.key != old.key
    assert r.drain_removed() == [old]


def test_static_pod_found_by_mirror_hash(node: Node, clock: FakeClock) -> None:
    config_hash = "5d2e6b7f1c0a4e3f9b8d7c6a5e4f3a21"
    d = node.root / "kubepods.slice" / f"kubepods-pod{config_hash}.slice"
    d.mkdir()
    r = make(node, clock)
    r.upsert(info(9, {}, ns="kube-system",
                  annotations={"kubernetes.io/config.mirror": config_hash}))
    r.refresh()
    owner = r.resolve(os.stat(d).st_ino)
    assert owner is not None and labels(owner)["pod"] == "pod-9"


def test_reconcile_deletes_missing(node: Node, clock: FakeClock) -> None:
    a, _ = node.add(uid(1)), node.add(uid(2))
    r = make(node, clock, grace_seconds=0.0)
    r.upsert(info(1, {}))
    r.upsert(info(2, {}))
    r.refresh()
    owner1 = r.resolve(a[""])
    assert r.reconcile([info(2, {})]) == 1
    assert r.pod_uids() == {uid(2)}
    r.refresh()
    assert r.drain_removed() == [owner1]

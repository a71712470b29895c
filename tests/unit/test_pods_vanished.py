"""Ids of removed cgroup directories stay resolvable for the grace period.

The runtime removes a dead container's cgroup at once; the kernel data of its last
moments (the OOM kill that ended it, its last waits) is read a cycle later, after the
pod update that re-walked the tree. Oracle for every id: `os.stat(dir).st_ino` of a
directory the test made (and then removed)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from kpodmetrics.pods.podinfo import PodInfo, parse_pod
from kpodmetrics.pods.resolver import KubernetesResolver
from tests.k8s_api_server import make_pod

from .test_pods_resolver import FakeClock, Node, cid, labels, uid


def restarted(n: int, name: str, old: str, new: str, reason: str = "OOMKilled") -> PodInfo:
    """The pod as the API shows it after `name` restarted: new id, old one in lastState."""
    pod = make_pod(f"pod-{n}", uid=uid(n), containers={name: new})
    status = copy.deepcopy(pod["status"]["containerStatuses"][0])
    status["restartCount"] = 1
    status["lastState"] = {"terminated": {"reason": reason, "exitCode": 137,
                                          "containerID": f"containerd://{old}"}}
    pod["status"]["containerStatuses"] = [status]
    return parse_pod(pod)


def bury(node: Node, pod_uid: str, container_id: str) -> None:
    """Take a container directory out of the tree. Moved, not removed: a filesystem
    may hand a freed inode to the next directory, cgroupfs never reuses an id."""
    grave = node.root.parent / "graveyard"
    grave.mkdir(exist_ok=True)
    (node.pod_dir(pod_uid) / f"cri-containerd-{container_id}.scope").rename(grave / container_id)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path / "cgroup")


def make(node: Node, clock: FakeClock, **kw: object) -> KubernetesResolver:
    return KubernetesResolver(str(node.root), clock=clock, full_walk_interval=3600, **kw)  # type: ignore[arg-type]


def test_dead_container_id_resolves_after_its_directory_is_gone(
    node: Node, clock: FakeClock
) -> None:
    ids = node.add(uid(1), cid(1))
    r = make(node, clock, grace_seconds=5.0)
    r.upsert(parse_pod(make_pod("pod-1", uid=uid(1), containers={"app": cid(1)})))
    r.refresh()
    first = r.resolve(ids[cid(1)])
    assert first is not None and labels(first)["container"] == "app"
    # OOM kill: the runtime removes the cgroup and starts the container under a new id
    bury(node, uid(1), cid(1))
    new_id = node.add(uid(1), cid(2))[cid(2)]
    r.upsert(restarted(1, "app", cid(1), cid(2)))
    r.refresh()  # the pod changed: re-walk, the old directory is not found
    assert ids[cid(1)] not in {t.cgroup_id for t in r.targets()}
    clock.now += 1.0
    assert r.resolve(ids[cid(1)]) == first
    assert labels(r.resolve(new_id))["container"] == "app"
    # a second restart pushes the first id out of lastState: the name is remembered
    bury(node, uid(1), cid(2))
    node.add(uid(1), cid(3))
    r.upsert(restarted(1, "app", cid(2), cid(3)))
    r.refresh()
    assert r.resolve(ids[cid(1)]) == first
    assert r.resolve(new_id) == first  # same container name, same owner
    assert r.unresolved_total == 0
    assert r.stats.vanished_lookups >= 3
    clock.now += 4.0  # 5 s after the walk that lost the first directory
    r.refresh()
    assert r.resolve(ids[cid(1)]) is None
    assert r.unresolved_total == 1


def test_deleted_pod_ids_resolve_through_the_pod_grace_period(
    node: Node, clock: FakeClock
) -> None:
    ids = node.add(uid(2), cid(5))
    r = make(node, clock, grace_seconds=5.0)
    r.upsert(parse_pod(make_pod("pod-2", uid=uid(2), containers={"c": cid(5)})))
    r.refresh()
    pod_owner, c_owner = r.resolve(ids[""]), r.resolve(ids[cid(5)])
    r.delete(uid(2))
    node.remove(uid(2))
    clock.now += 1.0
    r.refresh()  # walks: both directories are gone
    assert r.targets() == []
    assert r.resolve(ids[cid(5)]) == c_owner
    assert r.resolve(ids[""]) == pod_owner
    clock.now += 4.0
    r.refresh()  # the pod's grace has ended: its owners go, its ids are unknown
    assert {o.key for o in r.drain_removed()} == {pod_owner.key, c_owner.key}  # type: ignore[union-attr]
    assert r.resolve(ids[cid(5)]) is None


def test_vanished_ids_are_bounded_and_expire(node: Node, clock: FakeClock) -> None:
    r = make(node, clock, grace_seconds=5.0, grace_max_entries=4)
    r.upsert(parse_pod(make_pod("pod-3", uid=uid(3), containers={})))
    for n in range(10):
        node.add(uid(3), cid(100 + n))
        r.refresh()
        r.upsert(parse_pod(make_pod("pod-3", uid=uid(3), containers={f"c{n}": cid(100 + n)})))
        bury(node, uid(3), cid(100 + n))
        r.refresh()
        assert r.sizes()["vanished"] <= 4
    clock.now += 5.0
    node.add(uid(3), cid(200))
    r.upsert(parse_pod(make_pod("pod-3", uid=uid(3), containers={"z": cid(200)})))
    r.refresh()
    assert r.sizes()["vanished"] == 0

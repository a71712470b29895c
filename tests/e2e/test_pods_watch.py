"""The pod watcher driven through kubernetes-asyncio against the API test server.

Each test starts Kubernetes attribution exactly as the service does
(`start_kubernetes(settings, cgroup_root)` with a generated kubeconfig) and checks
what the resolver knows, plus what the client sent (field selector, resume point)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from kpodmetrics.config import Settings
from kpodmetrics.pods import kubernetes
from kpodmetrics.pods.kubernetes import KubernetesAttribution, KubernetesStartError
from tests.k8s_api_server import FakeApiServer, make_pod

NODE = "node-a"
FAST = {"backoff_base": 0.05, "backoff_max": 0.2, "read_timeout": 5.0, "request_timeout": 2.0}


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.fixture
async def server() -> AsyncIterator[FakeApiServer]:
    srv = FakeApiServer()
    await srv.start()
    yield srv
    await srv.close()


def settings_for(srv: FakeApiServer, tmp_path: Path, **kw: Any) -> Settings:
    cg = tmp_path / "cgroup"
    cg.mkdir(exist_ok=True)
    s = Settings(node_name=NODE, kubeconfig=srv.write_kubeconfig(str(tmp_path / "kubeconfig")),
                 cgroup_root=str(cg), grace_period=60.0)
    for k, v in kw.items():
        setattr(s, k, v)
    return s


@pytest.fixture
async def start(
    server: FakeApiServer, tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    started: list[KubernetesAttribution] = []

    async def go(**kw: Any) -> KubernetesAttribution:
        att = await kubernetes.start_kubernetes(settings_for(server, tmp_path, **kw), None,
                                                startup_timeout=5.0, **FAST)
        started.append(att)
        return att

    yield go
    for att in started:
        await att.close()


def names(att: KubernetesAttribution) -> set[str]:
    r = att.resolver
    with r._lock:
        return {f"{p.info.namespace}/{p.info.name}" for p in r._pods.values()}


def watch_requests(srv: FakeApiServer) -> list[dict[str, str]]:
    return [q for q in srv.requests if q.get("watch", "").lower() == "true"]


async def test_initial_list_only_this_node(server: FakeApiServer, start: Any) -> None:
    server.add(make_pod("a1", node=NODE))
    server.add(make_pod("a2", namespace="shop", node=NODE))
    server.add(make_pod("b1", node="node-b"))
    att = await start()
    assert att.ready
    assert names(att) == {"default/a1", "shop/a2"}
    first = server.requests[0]
    assert first["fieldSelector"] == f"spec.nodeName={NODE}" and "watch" not in first
    w = watch_requests(server)[0]
    assert w["resourceVersion"] == str(server.resource_version)
    assert w["allowWatchBookmarks"].lower() == "true"


async def test_add_modify_delete(server: FakeApiServer, start: Any) -> None:
    att = await start(pod_labels=("app",))
    pod = server.add(make_pod("p", node=NODE, labels={"app": "v1"}))
    server.add(make_pod("elsewhere", node="node-b"))
    await until(lambda: names(att) == {"default/p"})
    uid = pod["metadata"]["uid"]
    pod["metadata"]["labels"]["app"] = "v2"
    pod["status"]["containerStatuses"] = [{"name": "c", "containerID": "containerd://" + "e" * 64}]
    server.modify(pod)
    await until(lambda: att.resolver._pods[uid].info.labels == ("v2",))
    assert att.resolver._pods[uid].info.containers == {"e" * 64: "c"}
    server.delete(uid)
    await until(lambda: names(att) == set())
    assert uid in att.resolver._grace
    assert att.watcher.stats.lists == 1 and att.watcher.stats.malformed == 0


async def test_disconnect_resumes_from_last_resource_version(
    server: FakeApiServer, start: Any
) -> None:
    att = await start()
    server.add(make_pod("p1", node=NODE))
    await until(lambda: names(att) == {"default/p1"})
    seen_rv = str(server.resource_version)
    await server.disconnect_watches(abrupt=True)
    server.add(make_pod("p2", node=NODE))  # happens while the client reconnects
    await until(lambda: names(att) == {"default/p1", "default/p2"})
    resumed = watch_requests(server)[-1]
    assert resumed["resourceVersion"] == seen_rv
    assert att.watcher.stats.lists == 1  # resumed, not re-listed


async def test_bookmark_moves_resume_point(server: FakeApiServer, start: Any) -> None:
    att = await start()
    server.add(make_pod("other", node="node-b"))  # moves the rv without an event for us
    server.bookmark()
    await until(lambda: att.watcher.stats.bookmarks == 1)
    await server.disconnect_watches(abrupt=False)
    await until(lambda: len(watch_requests(server)) == 2)
    assert watch_requests(server)[-1]["resourceVersion"] == str(server.resource_version)


@pytest.mark.parametrize("gone_as_http", [False, True])
async def test_410_relists_and_drops_pod_deleted_while_away(
    server: FakeApiServer, start: Any, gone_as_http: bool
) -> None:
    server.gone_as_http = gone_as_http
    keep = server.add(make_pod("keep", node=NODE))
    lost = server.add(make_pod("lost", node=NODE))
    att = await start()
    assert names(att) == {"default/keep", "default/lost"}
    await server.stop()
    server.delete(lost["metadata"]["uid"], silently=True)
    server.add(make_pod("new", node=NODE))
    server.compact()  # the history the client would resume from is gone
    await server.start()
    await until(lambda: names(att) == {"default/keep", "default/new"})
    assert att.watcher.stats.relists_gone >= 1 and att.watcher.stats.lists >= 2
    assert lost["metadata"]["uid"] in att.resolver._grace  # deleted, in its grace period
    assert keep["metadata"]["uid"] in att.resolver._pods


async def test_410_error_event_mid_stream(server: FakeApiServer, start: Any) -> None:
    att = await start()
    server.send_gone()
    await until(lambda: att.watcher.stats.relists_gone == 1 and att.watcher.stats.lists == 2)


async def test_api_down_keeps_mapping_then_recovers(
    server: FakeApiServer, start: Any, tmp_path: Path
) -> None:
    pod = server.add(make_pod("p", node=NODE))
    att = await start()
    await server.stop()
    await asyncio.sleep(0.6)  # several failed reconnects with back-off
    assert att.watcher.stats.errors >= 2
    assert names(att) == {"default/p"} and att.ready  # last known mapping kept
    server.modify(pod)
    server.add(make_pod("q", node=NODE))
    await server.start()
    await until(lambda: names(att) == {"default/p", "default/q"})


async def test_server_errors_back_off_then_recover(server: FakeApiServer, start: Any) -> None:
    att = await start()
    server.fail_next(500, n=4)
    t0 = time.monotonic()
    await server.disconnect_watches()
    await until(lambda: att.watcher.stats.errors >= 4 and server.open_watches == 1)
    # equal-jitter back-off with base 0.05: at least 0.025 + 0.05 + 0.1 + 0.1 (capped 0.2)
    assert time.monotonic() - t0 >= 0.275
    assert "HTTP 500" in att.watcher.stats.last_error
    server.add(make_pod("after-errors", node=NODE))
    await until(lambda: names(att) == {"default/after-errors"})


async def test_malformed_objects_skipped_and_counted(server: FakeApiServer, start: Any) -> None:
    bad = make_pod("bad", node=NODE)
    bad["metadata"]["uid"] = 12
    server.add(bad)
    server.add(make_pod("good", node=NODE))
    att = await start()
    assert names(att) == {"default/good"}
    assert att.watcher.stats.malformed == 1
    server.inject_raw("this is not json")
    server.inject_raw(json.dumps({"type": "ADDED", "object": "pod"}))
    server.inject_raw(json.dumps({"type": "WHAT", "object": {"metadata": {}}}))
    server.inject_raw(json.dumps({"type": "DELETED", "object": {"metadata": {}}}))
    broken = make_pod("broken", node=NODE)
    broken["status"]["containerStatuses"] = "nope"
    server.add(broken)
    server.add(make_pod("after", node=NODE))
    await until(lambda: "default/after" in names(att))
    assert names(att) == {"default/good", "default/after"}
    assert att.watcher.stats.malformed == 6
    assert att.watcher.stats.lists == 1  # the stream survived all of it


async def test_rbac_403_on_list_fails_start(server: FakeApiServer, tmp_path: Path) -> None:
    server.fail_next(403, message='pods is forbidden: User "system:serviceaccount:x:y" '
                     'cannot list resource "pods"')
    with pytest.raises(KubernetesStartError) as exc:
        await kubernetes.start_kubernetes(settings_for(server, tmp_path), None, **FAST)
    msg = str(exc.value)
    assert "verb 'list'" in msg and "resource 'pods'" in msg and "cannot list" in msg


async def test_rbac_403_on_watch_fails_start(server: FakeApiServer, tmp_path: Path) -> None:
    server.fail_next(403, watch_only=True)
    with pytest.raises(KubernetesStartError, match="verb 'watch' on resource 'pods'"):
        await kubernetes.start_kubernetes(settings_for(server, tmp_path), None, **FAST)


async def test_unreachable_server_does_not_fail_start(tmp_path: Path) -> None:
    srv = FakeApiServer()
    await srv.start()
    s = settings_for(srv, tmp_path)
    await srv.close()  # nothing listens on that port any more
    att = await kubernetes.start_kubernetes(s, None, startup_timeout=0.3, **FAST)
    try:
        assert not att.ready
        assert att.watcher.stats.errors >= 1
    finally:
        await att.close()


async def test_missing_node_name(server: FakeApiServer, tmp_path: Path) -> None:
    with pytest.raises(KubernetesStartError, match="NODE_NAME"):
        await kubernetes.start_kubernetes(settings_for(server, tmp_path, node_name=""), None)


async def test_unreadable_kubeconfig(server: FakeApiServer, tmp_path: Path) -> None:
    s = settings_for(server, tmp_path, kubeconfig=str(tmp_path / "nope"))
    with pytest.raises(KubernetesStartError, match=r"KUBECONFIG.*cannot read"):
        await kubernetes.start_kubernetes(s, None)
    garbage = tmp_path / "garbage"
    garbage.write_text("clusters: 7\n")
    s = settings_for(server, tmp_path, kubeconfig=str(garbage))
    with pytest.raises(KubernetesStartError, match="not a usable kubeconfig"):
        await kubernetes.start_kubernetes(s, None)


async def test_cgroup_root_not_found(server: FakeApiServer, tmp_path: Path) -> None:
    s = settings_for(server, tmp_path, cgroup_root=str(tmp_path / "missing"))
    with pytest.raises(KubernetesStartError, match="cgroup root"):
        await kubernetes.start_kubernetes(s, None)


def test_cluster_configured(tmp_path: Path) -> None:
    kc = tmp_path / "kc"
    assert not kubernetes.cluster_configured(Settings(kubeconfig=str(kc)), environ={})
    kc.write_text("{}")
    assert kubernetes.cluster_configured(Settings(kubeconfig=str(kc)), environ={})
    in_cluster = os.path.isfile(kubernetes.SERVICE_ACCOUNT_TOKEN)
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert kubernetes.cluster_configured(
        Settings(kubeconfig=str(tmp_path / "none")), environ=env) == in_cluster

"""Pod churn: 10,000 pods added and deleted through the API test server.

All pods are live at once (worst case), each with a pod directory and a container
directory in a cgroup-shaped tree and one series per cgroup in the real SeriesStore.
After every pod is deleted and its grace period has passed, nothing may be left:
no series, no pod, grace, owner or miss entries in the resolver. RSS before and after
is printed (run with -s to see it); growth is bounded so a leak fails the test.

    .venv/bin/pytest -q -s tests/e2e/test_pods_churn.py   (KPOD_CHURN_PODS=10000 default)
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from pathlib import Path

from kpodmetrics.collectors.ebpf.runqueue import CONTEXT_SWITCHES
from kpodmetrics.config import Settings
from kpodmetrics.export.store import SeriesStore
from kpodmetrics.pods import kubernetes
from kpodmetrics.samples import Kind, Sample
from tests.k8s_api_server import FakeApiServer, make_pod

NODE = "node-churn"
PODS = int(os.environ.get("KPOD_CHURN_PODS", "10000"))


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def uid(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-{n:012x}"


async def until(cond: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def churn(srv: FakeApiServer, att: kubernetes.KubernetesAttribution, store: SeriesStore,
                root: Path, first: int, count: int) -> int:
    """Add `count` pods (dirs + API), attribute one sample per cgroup, delete all."""
    r = att.resolver
    # plain strings, not pathlib: pathlib interns every path part for good
    qos = os.path.join(root, "kubepods.slice", "kubepods-besteffort.slice")
    dirs: list[tuple[str, str]] = []
    for n in range(first, first + count):
        d = os.path.join(qos, f"kubepods-besteffort-pod{uid(n).replace('-', '_')}.slice")
        c = os.path.join(d, f"cri-containerd-{n:064x}.scope")
        os.makedirs(c)
        dirs.append((d, c))
        srv.add(make_pod(f"p-{n}", namespace=f"ns-{n % 50}", node=NODE, uid=uid(n),
                         containers={"app": f"{n:064x}"}))
    await until(lambda: len(r.pod_uids()) == count, 60)
    await asyncio.to_thread(r.refresh)
    samples = [Sample(CONTEXT_SWITCHES, os.stat(p).st_ino, 1.0, Kind.DELTA,
                      (("kind", "voluntary"),))
               for pair in dirs for p in pair]
    stats = await asyncio.to_thread(store.apply, samples, r)
    assert stats.unresolved == 0
    live = store.series_counts().get(CONTEXT_SWITCHES.name, 0)
    for n in range(first, first + count):
        srv.delete(uid(n))
    await until(lambda: not r.pod_uids(), 60)
    for d, c in dirs:
        os.rmdir(c)
        os.rmdir(d)
    await asyncio.sleep(att.resolver._grace.ttl + 0.05)
    await asyncio.to_thread(r.refresh)
    await asyncio.to_thread(store.apply, [], r)
    return live


async def test_pod_churn_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    (root / "kubepods.slice" / "kubepods-besteffort.slice").mkdir(parents=True)
    srv = FakeApiServer()
    await srv.start()
    s = Settings(node_name=NODE, cgroup_root=str(root), grace_period=0.3,
                 kubeconfig=srv.write_kubeconfig(str(tmp_path / "kc")))
    att = await kubernetes.start_kubernetes(s, None)
    store = SeriesStore(static_labels=(("node", NODE),))
    try:
        await churn(srv, att, store, root, 1_000_000, 200)  # warm-up: imports, pools
        srv.compact()
        gc.collect()
        before = rss_kib()
        t0 = time.monotonic()
        live = await churn(srv, att, store, root, 0, PODS)
        elapsed = time.monotonic() - t0
        srv.compact()  # the test server's own event history is not the agent's memory
        gc.collect()
        mid = rss_kib()
        # a second round over new pods: memory the first round kept for reuse (allocator
        # arenas) is reused; a leak would grow again by about as much
        await churn(srv, att, store, root, 2 * PODS, PODS)
        srv.compact()
        gc.collect()
        after = rss_kib()
        left_series = sum(store.series_counts().values())
        sizes = att.resolver.sizes()
        print(f"\npod churn: {PODS} pods, {live} live series at peak, {elapsed:.1f}s; "
              f"RSS before {before} KiB, after round 1 {mid} KiB (+{mid - before}), "
              f"after round 2 {after} KiB (+{after - mid}); "
              f"series left {left_series}; resolver {sizes}; watch {att.watcher.stats}")
        assert live == 2 * PODS
        assert left_series == 0
        assert {k: v for k, v in sizes.items() if k != "cgroups"} == {
            "pods": 0, "grace": 0, "cgroup_uids": 0, "misses": 0, "removed_pending": 0,
            "owners": 0, "vanished": 0}
        assert sizes["cgroups"] == 3  # root, kubepods.slice, the QoS slice
        assert att.watcher.stats.malformed == 0
        assert mid - before < 64 * 1024, "RSS grew by more than 64 MiB over the churn"
        assert after - mid < (mid - before) / 2 + 4096, "the second round grew memory again"
    finally:
        await att.close()
        await srv.close()

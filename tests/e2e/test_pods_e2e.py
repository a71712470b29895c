"""The whole agent in Kubernetes mode: real cgroups, pods from the API test server,
a CPU-contending workload in a container cgroup, labels checked on /metrics; the
pod's series leave /metrics after its grace period."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp

from tests.conftest import require_root, slow_factor
from tests.e2e.agent_util import stop_agent
from tests.k8s_api_server import FakeApiServer, make_pod
from tests.kernel.cgroup_util import make_cgroups

NODE = "node-e2e"
FAMILY = "kpod_cpu_runqueue_latency_seconds_count"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def series(text: str, family: str) -> list[dict[str, str]]:
    out = []
    for line in text.splitlines():
        if line.startswith(family + "{"):
            body = line[len(family) + 1 : line.rindex("}")]
            out.append(dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', body)))
    return out


async def scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}{path}") as r:
        return r.status, await r.text()


async def test_agent_labels_runqueue_by_pod_then_drops_deleted_pod(tmp_path: Path) -> None:
    require_root()
    uid = str(uuid.uuid4())
    cid = uuid.uuid4().hex * 2
    pod_dir = f"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid.replace('-', '_')}.slice"
    srv = FakeApiServer()
    await srv.start()
    port = free_port()
    workers: list[subprocess.Popen[bytes]] = []
    agent = None
    try:
        with make_cgroups(pod_dir, f"{pod_dir}/cri-containerd-{cid}.scope") as cgs:
            base = os.path.dirname(os.path.dirname(os.path.dirname(cgs[0].path)))
            pod = srv.add(make_pod("web-0", namespace="shop", node=NODE, uid=uid,
                                   containers={"app": cid}))
            # two spinners pinned to one CPU: each waits on the run queue for the other
            for _ in range(2):
                w = subprocess.Popen(["taskset", "-c", "0", "sh", "-c", "while :; do :; done"])
                cgs[1].add(w.pid)
                workers.append(w)
            agent = subprocess.Popen(
                [sys.executable, "-m", "kpodmetrics", "run", "--mode", "kubernetes",
                 "--node-name", NODE, "--kubeconfig", srv.write_kubeconfig(str(tmp_path / "kc")),
                 "--cgroup-root", base, "--port", str(port), "--address", "127.0.0.1",
                 "--poll-interval", "0.5s", "--grace-period", "1s", "--profile", "minimal"],
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            deadline = time.monotonic() + 30 * slow_factor()
            found: list[dict[str, str]] = []
            while time.monotonic() < deadline and not found:
                await asyncio.sleep(0.5)
                assert agent.poll() is None, "agent exited"
                try:
                    _, text = await scrape(port)
                except aiohttp.ClientError:
                    continue
                found = [s for s in series(text, FAMILY) if s.get("pod") == "web-0"]
            assert found, "no run-queue series for the pod"
            assert {s["namespace"] for s in found} == {"shop"}
            assert {s["container"] for s in found} == {"app"}
            assert {s["node"] for s in found} == {NODE}
            assert (await scrape(port, "/readyz"))[0] == 200

            for w in workers:
                w.kill()
                w.wait()
            srv.delete(pod["metadata"]["uid"])
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                _, text = await scrape(port)
                if not any(s.get("pod") == "web-0" for s in series(text, FAMILY)):
                    break
            else:
                raise AssertionError("series of the deleted pod still exported")
            assert 'pod="web-0"' not in text
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
        if agent is not None:
            stop_agent(agent)
        await srv.close()

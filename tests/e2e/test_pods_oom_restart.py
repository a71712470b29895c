"""An OOM kill at container death is charged to the container, not to `__unresolved__`.

The whole agent in Kubernetes mode against the API test server. The container's
process is OOM-killed in a memory-limited cgroup (on hybrid hosts a v1 memory cgroup
below this process's own memory cgroup, as in tests/kernel/test_mem_oom.py; on pure
v2 hosts `memory.max` of the container cgroup), then, as the runtime does, its cgroup
is removed at once and the container restarts under a new ID, the API showing
`lastState.terminated.reason=OOMKilled` with the old ID. All of that happens right
after a collection cycle, so the next cycle re-walks the tree (the pod changed)
before it reads the kill: the old id is gone from the walk.

Oracle: the memory cgroup's own oom_kill counter (exactly one kill).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp

from tests.conftest import require_root
from tests.e2e.agent_util import stop_agent
from tests.e2e.test_pods_e2e import free_port, scrape, series
from tests.k8s_api_server import FakeApiServer, make_pod
from tests.kernel.cgroup_util import KernelCgroup, build_helper, make_cgroups, unified_root
from tests.kernel.test_mem_oom import V1_MEMORY, oom_kill_count, spawn, v1_memcg

NODE = "node-oom"
LIMIT = 64 << 20
HOG_MIB = 128
OOM = "kpod_mem_oom_kills_total"
CYCLES = "kpod_collection_cycle_duration_seconds_count"
RUNQ = "kpod_cpu_runqueue_latency_seconds_count"


def cid() -> str:
    return uuid.uuid4().hex * 2


def samples(text: str, family: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        if line.startswith(family + " ") or line.startswith(family + "{"):
            labels = series(line, family)
            out.append((labels[0] if labels else {}, float(line.rsplit(" ", 1)[1])))
    return out


def value_of(text: str, family: str) -> float:
    got = samples(text, family)
    if not got:
        raise LookupError(family)
    return got[0][1]


@contextlib.contextmanager
def memory_limit(container: KernelCgroup) -> Iterator[tuple[list[str], str]]:
    """(cgroup.procs files the victim joins, memory cgroup dir with the oom_kill count)."""
    procs = os.path.join(container.path, "cgroup.procs")
    if os.path.isfile(os.path.join(V1_MEMORY, "memory.limit_in_bytes")):
        with v1_memcg(LIMIT) as mem:
            yield [procs, os.path.join(mem, "cgroup.procs")], mem
        return
    # pure v2: the memory controller down to the container cgroup, then its memory.max
    level = unified_root()
    for part in os.path.relpath(os.path.dirname(container.path), level).split(os.sep):
        with open(os.path.join(level, "cgroup.subtree_control"), "w") as fh:
            fh.write("+memory")
        level = os.path.join(level, part)
    with open(os.path.join(level, "cgroup.subtree_control"), "w") as fh:
        fh.write("+memory")
    with open(os.path.join(container.path, "memory.max"), "w") as fh:
        fh.write(str(LIMIT))
    yield [procs], container.path


def restarted(pod: dict, old: str, new: str) -> dict:  # type: ignore[type-arg]
    """The pod after its container `app` was OOM-killed and started again."""
    pod = copy.deepcopy(pod)
    status = pod["status"]["containerStatuses"][0]
    status["containerID"] = f"containerd://{new}"
    status["restartCount"] = 1
    status["lastState"] = {"terminated": {"reason": "OOMKilled", "exitCode": 137,
                                          "containerID": f"containerd://{old}"}}
    return pod


async def wait_for(port: int, agent: subprocess.Popen[bytes], pred: object,
                   timeout: float = 40.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert agent.poll() is None, "agent exited"
        try:
            _, text = await scrape(port)
        except aiohttp.ClientError:
            await asyncio.sleep(0.2)
            continue
        if pred(text):  # type: ignore[operator]
            return text
        await asyncio.sleep(0.1)
    raise AssertionError("timed out waiting for the agent")


async def test_oom_kill_at_container_death_is_charged_to_the_container(tmp_path: Path) -> None:
    require_root()
    hog = build_helper("mem_hog")
    uid = str(uuid.uuid4())
    old_id, new_id = cid(), cid()
    pod_dir = ("kubepods.slice/kubepods-burstable.slice/"
               f"kubepods-burstable-pod{uid.replace('-', '_')}.slice")
    srv = FakeApiServer()
    await srv.start()
    port = free_port()
    agent = None
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with make_cgroups(pod_dir, f"{pod_dir}/cri-containerd-{old_id}.scope") as cgs:
            pod_cg, ctr = cgs
            base = os.path.dirname(os.path.dirname(os.path.dirname(pod_cg.path)))
            pod = srv.add(make_pod("web-0", namespace="shop", node=NODE, uid=uid,
                                   containers={"app": old_id}))
            with memory_limit(ctr) as (victim_files, memcg):
                victim = spawn([hog, str(HOG_MIB)], victim_files, 1000)
                procs.append(victim)
                # wake-ups in the container, so the agent shows it resolved by its walk
                waker = subprocess.Popen(["sh", "-c", "while :; do sleep 0.02; done"])
                procs.append(waker)
                ctr.add(waker.pid)
                agent = subprocess.Popen(
                    [sys.executable, "-m", "kpodmetrics", "run", "--mode", "kubernetes",
                     "--node-name", NODE, "--kubeconfig",
                     srv.write_kubeconfig(str(tmp_path / "kc")), "--cgroup-root", base,
                     "--port", str(port), "--address", "127.0.0.1", "--poll-interval", "3s",
                     "--grace-period", "10s", "--profile", "minimal"],
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
                await wait_for(port, agent, lambda t: any(
                    s.get("container") == "app" for s in series(t, RUNQ)))
                waker.kill()
                waker.wait()
                # right after a cycle: kill, remove the cgroup, restart, update the API
                text = await wait_for(port, agent, lambda t: True)
                cycles = value_of(text, CYCLES)
                await wait_for(port, agent, lambda t: value_of(t, CYCLES) > cycles)
                t0 = time.monotonic()
                kills_before = oom_kill_count(memcg)
                assert victim.stdin is not None
                victim.stdin.write(b"g")
                victim.stdin.flush()
                assert victim.wait(timeout=10) == -signal.SIGKILL, "the hog must be OOM-killed"
                kills = oom_kill_count(memcg) - kills_before
                os.rmdir(ctr.path)
                os.mkdir(os.path.join(os.path.dirname(ctr.path),
                                      f"cri-containerd-{new_id}.scope"))
                srv.modify(restarted(pod, old_id, new_id))
                window = time.monotonic() - t0
                assert window < 2.0, f"restart took {window:.1f}s: a cycle may have come between"
                # two more cycles: the kill is read after the walk that lost the directory
                await wait_for(port, agent, lambda t: value_of(t, CYCLES) >= cycles + 3)
                _, text = await scrape(port)
        kills_of = {(lab["namespace"], lab["pod"], lab["container"]): v
                    for lab, v in samples(text, OOM)}
        print(f"\noom: memcg oom_kill delta={kills}; exported {kills_of}")
        assert kills == 1
        assert kills_of.get(("shop", "web-0", "app")) == 1.0
        assert sum(v for (ns, _, _), v in kills_of.items() if ns == "__unresolved__") == 0
        assert sum(kills_of.values()) == 1.0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if agent is not None:
            stop_agent(agent)
        await srv.close()

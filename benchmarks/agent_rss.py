"""Resident memory of the agent: standalone idle, and Kubernetes mode with N pods.

    sudo .venv/bin/python -m benchmarks.agent_rss [--pods 110] [--cycles 5]
                                                  [--profile standard] [--src DIR]

Each case starts the real agent (`python -m kpodmetrics run`, sources from `--src`,
default this tree), waits for `--cycles` collection cycles after start-up, then reads
VmRSS and VmHWM from /proc/<pid>/status. Kubernetes mode runs against the API test
server (tests/k8s_api_server.py, in a thread of this process) with N pods, each a
real cgroup v2 pod directory plus one container directory under a `kpod-test-*`
tree, and checks that every pod shows up on /metrics before it measures. `--src`
pointing at an older checkout gives the "before" figure of the same run.
Targets (issue 18): standalone idle <= 60 MiB, Kubernetes mode with 110 pods <= 80 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from tests.k8s_api_server import FakeApiServer, make_pod
from tests.kernel.cgroup_util import make_cgroups

from benchmarks.procs import free_port, memory_kib

CYCLES = "kpod_collection_cycle_duration_seconds_count"
NODE = "node-rss"


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def cycles(text: str) -> float:
    m = re.search(rf"^{CYCLES}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def run_agent(src: str, args: list[str], n_cycles: int, pods: int = 0,
              mode: str = "") -> dict[str, int]:
    """Start the agent, wait for n cycles (and every pod), return its memory figures."""
    port = free_port()
    home = tempfile.mkdtemp(prefix="kpod-rss-home-")  # no ~/.kube/config: auto = standalone
    # not the caller's KPOD_* (make bench's own KPOD_BENCH_OUT): the agent refuses
    # settings it does not know
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("KPOD_")},
           "PYTHONPATH": src, "PYTHONUNBUFFERED": "1", "HOME": home}
    for var in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        env.pop(var, None)
    with tempfile.TemporaryFile() as log:
        agent = subprocess.Popen(
            [sys.executable, "-m", "kpodmetrics", "run", "--port", str(port),
             "--address", "127.0.0.1", *args], env=env, stdout=log, stderr=log,
            cwd=tempfile.gettempdir(), start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            first = None
            while time.monotonic() < deadline:
                if agent.poll() is not None:
                    log.seek(0)
                    raise RuntimeError("agent exited: " + log.read().decode()[-2000:])
                try:
                    text = scrape(port)
                except OSError:
                    time.sleep(0.2)
                    continue
                seen = set(re.findall(r'pod="(pod-\d+)"', text))
                if first is None and len(seen) >= pods:
                    first = cycles(text)
                if first is not None and cycles(text) >= first + n_cycles:
                    figures = memory_kib(agent.pid)
                    log.seek(0)
                    said = log.read().decode(errors="replace")
                    if mode and f"mode={mode}" not in said:
                        raise RuntimeError(f"agent not in mode {mode}: {said[-2000:]}")
                    return figures
                time.sleep(0.2)
            raise RuntimeError("timed out waiting for cycles/pods")
        finally:
            with contextlib.suppress(ProcessLookupError):  # it may have exited: say why
                os.killpg(agent.pid, signal.SIGTERM)
            try:
                agent.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(agent.pid, signal.SIGKILL)
                agent.wait()
            shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def api_server(pod_list: list[dict[str, object]]) -> Iterator[FakeApiServer]:
    """The API test server on its own event loop thread."""
    loop = asyncio.new_event_loop()
    srv = FakeApiServer()
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(srv.start())
        for p in pod_list:
            srv.add(p)
        started.set()
        loop.run_forever()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    started.wait(10)
    try:
        yield srv
    finally:
        asyncio.run_coroutine_threadsafe(srv.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        t.join(10)


def standalone_idle(src: str, profile: str, n_cycles: int) -> dict[str, int]:
    with make_cgroups("idle") as cgs:
        root = os.path.dirname(cgs[0].path)
        # mode auto, as a plain host runs it: the mode is decided without a cluster
        return run_agent(src, ["--mode", "auto", "--cgroup-root", root,
                               "--profile", profile, "--poll-interval", "1s"], n_cycles,
                         mode="standalone")


def kubernetes_pods(src: str, profile: str, n_cycles: int, n_pods: int) -> dict[str, int]:
    uids = [str(uuid.uuid4()) for _ in range(n_pods)]
    cids = [uuid.uuid4().hex * 2 for _ in range(n_pods)]
    dirs = []
    for u, c in zip(uids, cids, strict=True):
        pod = f"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u.replace('-', '_')}.slice"
        dirs += [pod, f"{pod}/cri-containerd-{c}.scope"]
    pods: list[dict[str, object]] = [
        make_pod(f"pod-{i}", namespace="bench", node=NODE, uid=u, containers={"app": c})
        for i, (u, c) in enumerate(zip(uids, cids, strict=True))]
    with make_cgroups(*dirs) as cgs, api_server(pods) as srv, \
            tempfile.TemporaryDirectory() as tmp:
        base = os.path.dirname(os.path.dirname(os.path.dirname(cgs[0].path)))
        kc = srv.write_kubeconfig(str(Path(tmp) / "kubeconfig"))
        return run_agent(src, ["--mode", "kubernetes", "--node-name", NODE, "--kubeconfig", kc,
                               "--cgroup-root", base, "--profile", profile,
                               "--poll-interval", "1s"], n_cycles, pods=n_pods,
                         mode="kubernetes")


def measure(pods: int = 110, profile: str = "standard", n_cycles: int = 5,
            src: str | None = None) -> dict[str, dict[str, object]]:
    """Both cases for make bench: {case: VmRSS/VmHWM KiB, or the error}."""
    src = src or str(Path(__file__).resolve().parent.parent / "src")
    out: dict[str, dict[str, object]] = {}
    for name in ("standalone_idle", "kubernetes"):
        try:
            got = (standalone_idle(src, profile, n_cycles) if name == "standalone_idle"
                   else kubernetes_pods(src, profile, n_cycles, pods))
            out[name] = {**got, "pods": pods if name == "kubernetes" else 0}
        except (RuntimeError, OSError) as exc:
            out[name] = {"error": str(exc)[-500:]}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.agent_rss", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pods", type=int, default=110)
    p.add_argument("--cycles", type=int, default=5)
    p.add_argument("--profile", default="standard")
    p.add_argument("--src", default=str(Path(__file__).resolve().parent.parent / "src"))
    a = p.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (BPF, cgroups)", file=sys.stderr)
        return 2
    idle = standalone_idle(a.src, a.profile, a.cycles)
    k8s = kubernetes_pods(a.src, a.profile, a.cycles, a.pods)
    print(f"src={a.src} profile={a.profile} cycles={a.cycles}")
    print(f"standalone idle        VmRSS {idle['VmRSS'] / 1024:6.1f} MiB  "
          f"VmHWM {idle['VmHWM'] / 1024:6.1f} MiB  (target <= 60)")
    print(f"kubernetes {a.pods:4d} pods   VmRSS {k8s['VmRSS'] / 1024:6.1f} MiB  "
          f"VmHWM {k8s['VmHWM'] / 1024:6.1f} MiB  (target <= 80 at 110 pods)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

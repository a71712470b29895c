"""The image, built here and run exactly as the standard overlay's DaemonSet runs it.

`make image` (scripts/image/build.sh) builds it with podman from Debian packages and
locally made wheels (no registry). deploy/podman_run.py turns the rendered DaemonSet
(capabilities, read-only root, seccomp, host pid namespace, host paths, env) into
podman arguments; only the mode (standalone, as no API server runs here), the port and
the poll interval are overridden. Oracles: a busy host cgroup must show run-queue
waits and its cpu.stat usage (read from the cgroup file itself); a tmpfs volume of
another uid's process in its own mount namespace must show the size it was mounted
with; after `podman stop` the container must exit 0 and every BPF program it held
must be gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kpodmetrics.pods import cgroupfs
from tests.conftest import require, require_root
from tests.e2e.agent_util import free_port

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "deploy"))
import podman_run  # noqa: E402
from capabilities import VOLUME_BYTES, workload  # noqa: E402
from podman_run import podman, running, scrape  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.kernel]
IMAGE = "localhost/kpod-metrics:e2e"


@pytest.fixture(scope="module")
def image() -> str:
    require_root()
    for tool in ("podman", "runc", "mmdebstrap", "kubectl"):
        require(shutil.which(tool) is not None, f"{tool} builds and runs the image")
    env = {**os.environ, "CONTAINERS_CONF": podman_run.CONTAINERS_CONF, "PYTHON": sys.executable}
    subprocess.run(["bash", str(REPO / "scripts/image/build.sh"), IMAGE], cwd=REPO, env=env,
                   check=True, timeout=1500)
    return IMAGE


def prog_ids_of(pid: int) -> set[int]:
    """BPF program ids held by a process, from its fdinfo (no other process counts)."""
    ids: set[int] = set()
    fdinfo = f"/proc/{pid}/fdinfo"
    for fd in os.listdir(fdinfo):
        with contextlib.suppress(OSError), open(os.path.join(fdinfo, fd)) as fh:
            for line in fh:
                if line.startswith("prog_id:"):
                    ids.add(int(line.split()[1]))
    return ids


def loaded_prog_ids() -> set[int]:
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True,
                         check=True).stdout
    return {int(p["id"]) for p in json.loads(out)}


def usage_usec(rel: str) -> int:
    with open(os.path.join(cgroupfs.detect_root(None) + rel, "cpu.stat")) as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("usage_usec"))


def test_image_runs_with_the_daemonsets_privileges(image: str) -> None:
    spec = podman_run.agent_spec(podman_run.render("standard"), "e2e-node")
    assert spec.read_only_root and spec.no_new_privileges and spec.capabilities
    with workload(spinners=3) as cg:
        port = free_port()
        with running(image, f"kpod-test-image-{os.getpid()}", port) as name:
            pid = int(podman("inspect", "-f", "{{.State.Pid}}", name).stdout)
            runq = cpu = volume = 0.0
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                time.sleep(1)
                with contextlib.suppress(OSError):
                    samples = scrape(port)
                    after = usage_usec(cg["busy"])
                    busy = [(n, v) for n, lab, v in samples if lab.get("cgroup") == cg["busy"]]
                    runq = sum(v for n, v in busy if n == "kpod_cpu_runqueue_latency_seconds_count")
                    cpu = sum(v for n, v in busy if n == "kpod_cpu_usage_seconds_total")
                    volume = sum(v for n, lab, v in samples if n == "kpod_fs_capacity_bytes"
                                 and lab.get("cgroup") == cg["vol"])
                    if runq > 0 and cpu > 0 and volume > 0:
                        break
            else:
                logs = podman("logs", name, check=False).stdout[-3000:]
                pytest.fail(f"missing series: runq={runq} cpu={cpu} volume={volume}\n{logs}")
            # cpu.stat as the agent read it in some earlier cycle: never above the file
            assert 0 < cpu <= after / 1e6 + 1e-6, (cpu, after)
            assert volume == VOLUME_BYTES
            up = {lab["collector"]: v for n, lab, v in samples if n == "kpod_collector_up"}
            assert up and all(v == 1 for v in up.values()), up
            held = prog_ids_of(pid)
            assert held, "the agent holds no BPF program"
            podman("stop", "-t", "10", name, timeout=30)
            code = podman("inspect", "-f", "{{.State.ExitCode}}", name, check=False).stdout
            assert code.strip() == "0", f"agent exit code {code!r}"
    deadline = time.monotonic() + 5
    while (left := held & loaded_prog_ids()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"BPF programs of the stopped container still loaded: {sorted(left)}"

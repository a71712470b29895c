"""Shared pieces of the reliability suite: the hangfs FUSE helper, a volume in a private
mount namespace of a test cgroup's process, the agent's own log, metric look-ups."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import require, require_root
from tests.e2e.agent_util import AgentProc
from tests.kernel.cgroup_util import BUILD, KernelCgroup

HERE = Path(__file__).resolve().parent
Samples = list[tuple[str, dict[str, str], float]]


def build_hangfs() -> str:
    """Compile tests/chaos/hangfs.c against libfuse3 (cached by mtime)."""
    require_root()
    require(os.path.exists("/dev/fuse"), "/dev/fuse (the fuse kernel module)")
    require(shutil.which("pkg-config") is not None and subprocess.run(
        ["pkg-config", "--exists", "fuse3"]).returncode == 0,
        "libfuse3-dev (Debian package; `make deps-test` installs it)")
    src = HERE / "hangfs.c"
    BUILD.mkdir(parents=True, exist_ok=True)
    out = BUILD / "hangfs"
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "fuse3"], check=True,
                               capture_output=True, text=True).stdout.split()
        subprocess.run(["cc", "-O2", "-Wall", "-o", str(out), str(src), *flags], check=True)
    return str(out)


# Runs under `unshare -m`: joins the cgroup, mounts hangfs privately, waits for stdin.
_MOUNTER = r"""
import os, subprocess, sys, time
hangfs, mnt, mode, gate, victim, procs = sys.argv[1:7]
with open(procs, "w") as fh:
    fh.write(str(os.getpid()))
fs = subprocess.Popen([hangfs, mnt, mode, gate, victim])
deadline = time.monotonic() + 20
while not os.path.ismount(mnt):
    if fs.poll() is not None or time.monotonic() > deadline:
        print("hangfs did not mount", flush=True)
        sys.exit(1)
    time.sleep(0.02)
print("ready", os.getpid(), fs.pid, flush=True)
sys.stdin.read()
fs.kill()
"""


@dataclass
class HungVolume:
    mountpoint: str
    gate: str
    victim: str
    mounter: subprocess.Popen[str]
    daemon_pid: int

    def hang_for(self, pid: int) -> None:
        """From now on statfs (or reads) of this process wait until `release`."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.gate)
        with open(self.victim, "w") as fh:
            fh.write(str(pid))

    def release(self) -> None:
        with open(self.gate, "w"):
            pass


@contextlib.contextmanager
def hung_volume(cg: KernelCgroup, mode: str) -> Iterator[HungVolume]:
    """hangfs mounted in a private mount namespace whose process is in `cg`; the host
    never sees the mount. Starts released (answers everyone)."""
    hangfs = build_hangfs()
    require(shutil.which("unshare") is not None, "unshare (util-linux)")
    work = tempfile.mkdtemp(prefix="kpod-test-hangfs-")
    mnt = os.path.join(work, "vol")
    os.mkdir(mnt)
    gate, victim = os.path.join(work, "gate"), os.path.join(work, "victim")
    open(gate, "w").close()
    mounter = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", sys.executable, "-c", _MOUNTER, hangfs,
         mnt, mode, gate, victim, os.path.join(cg.path, "cgroup.procs")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line: list[str] = []
    try:
        assert mounter.stdout is not None
        line = mounter.stdout.readline().split()
        assert line[:1] == ["ready"], f"hangfs: {line}"
        yield HungVolume(mnt, gate, victim, mounter, int(line[2]))
    finally:
        open(gate, "w").close()  # whatever waits is answered before we go
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line[2]) if len(line) > 2 else mounter.pid, 9)
        mounter.kill()
        mounter.wait()
        shutil.rmtree(work, ignore_errors=True)


def value(samples: Samples, name: str, **labels: str) -> float | None:
    for n, lab, v in samples:
        if n == name and all(lab.get(k) == x for k, x in labels.items()):
            return v
    return None


def cycles(samples: Samples) -> float:
    got = value(samples, "kpod_collection_cycle_duration_seconds_count")
    assert got is not None
    return got


def stop_and_log(agent: AgentProc, timeout: float = 15.0) -> tuple[float, int, str]:
    """SIGTERM; seconds until the process was gone, its exit code, its whole log."""
    t0 = time.monotonic()
    agent.proc.terminate()
    try:
        rc = agent.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        agent.proc.kill()
        agent.proc.wait()
        rc = -9
    took = time.monotonic() - t0
    out = agent.proc.stdout.read().decode() if agent.proc.stdout else ""
    return took, rc, out

"""Test cgroups in the unified (v2) hierarchy, created and always removed by the test.

Only cgroups named kpod-test-* that the test itself created are touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from kpodmetrics.pods import cgroupfs

HELPERS = Path(__file__).resolve().parent.parent / "helpers"
BUILD = Path(os.environ.get("KPOD_TEST_BUILD", "/tmp/kpod-test-helpers"))


def unified_root() -> str:
    return cgroupfs.detect_root(None)


def v2_controllers() -> set[str]:
    """Controllers enabled for children of the unified root (its cgroup.subtree_control).

    A pure-v2 node (the kernel VMs of scripts/vm) has cpu, memory, io, pids there; a
    hybrid host's controller-less unified tree has none."""
    with open(os.path.join(unified_root(), "cgroup.subtree_control")) as fh:
        return set(fh.read().split())


def require_v2(*controllers: str) -> None:
    """Skip unless the unified hierarchy enables `controllers` for its children.

    Inside a kernel VM (VM_KERNEL set by scripts/vm/run.sh) they must be there: fail.
    Elsewhere (a hybrid host) the skip names the missing unified controllers."""
    import pytest

    missing = sorted(set(controllers) - v2_controllers())
    if not missing:
        return
    reason = (f"needs the {', '.join(missing)} controller(s) in the unified cgroup v2 hierarchy "
              f"(pure cgroup v2); {unified_root()} enables "
              f"{', '.join(sorted(v2_controllers())) or 'none'}")
    if os.environ.get("VM_KERNEL"):
        pytest.fail(f"in the kernel VM: {reason}", pytrace=False)
    pytest.skip(reason)


def write(cg: KernelCgroup | str, name: str, value: str) -> None:
    """Write one cgroup interface file (e.g. memory.max) of `cg`."""
    path = cg.path if isinstance(cg, KernelCgroup) else cg
    with open(os.path.join(path, name), "w") as fh:
        fh.write(value)


def read_keyed(cg: KernelCgroup | str, name: str) -> dict[str, int]:
    """A flat-keyed cgroup file (memory.events, cpu.stat, memory.stat) as ints: the oracle."""
    path = cg.path if isinstance(cg, KernelCgroup) else cg
    with open(os.path.join(path, name)) as fh:
        return {k: int(v) for k, v in (line.split() for line in fh if line.strip())}


class KernelCgroup:
    """A cgroup v2 directory owned by one test."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.id = os.stat(path).st_ino
        self.rel = "/" + os.path.relpath(path, unified_root())

    def add(self, pid: int) -> None:
        with open(os.path.join(self.path, "cgroup.procs"), "w") as fh:
            fh.write(str(pid))

    def pids(self) -> list[int]:
        with open(os.path.join(self.path, "cgroup.procs")) as fh:
            return [int(x) for x in fh.read().split()]

    def kill_all(self) -> None:
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)


@contextlib.contextmanager
def make_cgroups(*names: str, parent: str | None = None,
                 controllers: tuple[str, ...] = ()) -> Iterator[list[KernelCgroup]]:
    """Create kpod-test-<uuid>/<name> for each name; kill their tasks and remove all after.

    `controllers` (pure v2): enabled in kpod-test-<uuid>'s subtree_control, so each
    child has their interface files (memory.max, cpu.max, io.stat ...)."""
    root = parent or unified_root()
    base = os.path.join(root, f"kpod-test-{uuid.uuid4().hex[:10]}")
    os.mkdir(base)
    made: list[KernelCgroup] = []
    try:
        if controllers:
            write(base, "cgroup.subtree_control", " ".join(f"+{c}" for c in controllers))
        for n in names:
            p = os.path.join(base, n)
            os.makedirs(p)
            made.append(KernelCgroup(p))
        yield made
    finally:
        remove_tree(base)


def remove_tree(base: str) -> None:
    """Kill every task below `base` and rmdir bottom-up."""
    for dirpath, _dirs, _files in sorted(os.walk(base), key=lambda t: -t[0].count("/")):
        with contextlib.suppress(OSError):
            KernelCgroup(dirpath).kill_all()
        for _ in range(100):
            try:
                os.rmdir(dirpath)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.05)


def build_helper(name: str) -> str:
    """Compile tests/helpers/<name>.c (cached by mtime) and return the binary path."""
    src = HELPERS / f"{name}.c"
    BUILD.mkdir(parents=True, exist_ok=True)
    out = BUILD / name
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        subprocess.run(["cc", "-O2", "-Wall", "-o", str(out), str(src)], check=True)
    return str(out)


def spawn_in(cg: KernelCgroup, argv: list[str], **kw: object) -> subprocess.Popen[bytes]:
    """Start argv so that it is in `cg` before it executes (no window outside it)."""
    path = os.path.join(cg.path, "cgroup.procs")

    def enter() -> None:
        with open(path, "w") as fh:
            fh.write(str(os.getpid()))

    return subprocess.Popen(argv, preexec_fn=enter, **kw)  # type: ignore[call-overload]


def move_in(cg: KernelCgroup, pid: int) -> None:
    """Move a running process into `cg` (for a test that must know exactly what it
    did before: see cpu_ns)."""
    with open(os.path.join(cg.path, "cgroup.procs"), "w") as fh:
        fh.write(str(pid))


def cpu_ns(pid: int) -> int:
    """The task's CPU time so far (schedstat's sum_exec_runtime, ns). Read before
    move_in, it is what the task ran outside the cgroup: spawn_in's child runs a few
    ms (50 under QEMU TCG) in the parent's cgroup before it can join its own."""
    with open(f"/proc/{pid}/schedstat") as fh:
        return int(fh.read().split()[0])


PYTHON = sys.executable

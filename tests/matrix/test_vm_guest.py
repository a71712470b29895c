"""The VM is the node run.sh promised: the kernel it booted, pure cgroup v2 with the
controllers enabled at the root, tracefs, and the scratch block device.

Oracles are the kernel's own files (/proc, /sys, mountinfo), not run.sh's words.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel


def mounts() -> dict[str, tuple[str, str]]:
    """mount point -> (fstype, source), the last mount on a point winning."""
    out: dict[str, tuple[str, str]] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        point = left.split()[4]
        fstype, source = right.split()[:2]
        out[point] = (fstype, source)
    return out


def test_booted_the_kernel_that_was_asked_for() -> None:
    assert os.uname().release == os.environ["VM_KERNEL"]
    assert Path("/proc/sys/kernel/osrelease").read_text().strip() == os.environ["VM_KERNEL"]


def test_pure_cgroup_v2_with_controllers_at_the_root() -> None:
    m = mounts()
    assert m["/sys/fs/cgroup"][0] == "cgroup2"
    assert not any(fs == "cgroup" for fs, _ in m.values()), "no v1 hierarchy may be mounted"
    enabled = set(Path("/sys/fs/cgroup/cgroup.subtree_control").read_text().split())
    assert {"cpu", "memory", "io", "pids"} <= enabled
    # and a child gets them: the files the collectors read exist there
    child = Path(f"/sys/fs/cgroup/kpod-test-vm-{os.getpid()}")
    child.mkdir()
    try:
        for f in ("cpu.max", "cpu.stat", "memory.max", "memory.events", "io.stat", "pids.max",
                  "cpu.pressure", "memory.pressure", "io.pressure"):
            assert (child / f).exists(), f
    finally:
        child.rmdir()


def test_scratch_is_a_real_block_device() -> None:
    scratch = os.environ["VM_SCRATCH"]
    fstype, source = mounts()[scratch]
    assert (fstype, source) == ("ext4", "/dev/vda")
    st = os.stat(scratch)
    dev = Path("/sys/block/vda/dev").read_text().strip()
    assert f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}" == dev


def test_tracefs_mounted() -> None:
    assert mounts()["/sys/kernel/tracing"][0] == "tracefs"
    assert Path("/sys/kernel/tracing/events/sched/sched_switch/id").exists()

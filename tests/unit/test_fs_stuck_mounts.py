"""A volume whose statvfs hangs costs one deadline once, is skipped (counted per pod)
while the call is out, is measured again once it returns; other volumes go on."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from kpodmetrics.collectors.files import volumes as fs
from kpodmetrics.collectors.files.support import stuckmounts

from .test_cgfiles_helpers import ctx_for, k8s_refs, scalar
from .test_cgfiles_pernetns import _fs_proc, make_pod

FAMS = ("kpod_fs_capacity_bytes", "kpod_fs_usage_bytes", "kpod_fs_available_bytes",
        "kpod_fs_inodes", "kpod_fs_inodes_free")


def _other_device(than: int) -> str:
    for cand in ("/dev/shm", "/run", "/dev", "/sys/fs/cgroup"):
        if os.path.isdir(cand) and os.stat(cand).st_dev != than:
            return cand
    pytest.skip("no second device to stand for a healthy volume")


def test_hung_statvfs_is_skipped_until_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    healthy = _other_device(os.stat(volume).st_dev)
    st = os.stat(healthy)
    proc, _ = _fs_proc(tmp_path, volume,
                       f"2600 2401 {os.major(st.st_dev)}:{os.minor(st.st_dev)} / /healthy rw "
                       "- tmpfs shm rw\n")
    (tmp_path / "container-root" / "healthy").symlink_to(healthy)
    pod = make_pod(tmp_path, "pod", {"ctr-a": "300\n"})

    gate, calls = tmp_path / "gate", tmp_path / "calls"
    # the helper process, with a statvfs of /vol that waits like a dead FUSE daemon's
    hang = (f"    if path.endswith(b'/vol'):\n"
            f"        open({str(calls)!r}, 'a').write('x')\n"
            f"        while not os.path.exists({str(gate)!r}): __import__('time').sleep(0.01)\n")
    child = stuckmounts._CHILD.replace("    try:\n        before", hang + "    try:\n        before")
    assert child != stuckmounts._CHILD
    monkeypatch.setattr(stuckmounts, "_CHILD", child)
    collector = fs.FsCollector(stat_deadline=0.3)
    caplog.set_level(logging.WARNING)

    def cycle() -> tuple[dict[tuple[str, int, tuple[tuple[str, str], ...]], float], float]:
        ctx = ctx_for(k8s_refs(pod, ["ctr-a"]), str(proc))
        t0 = time.monotonic()
        got = scalar(collector.collect(ctx))
        assert ctx.errors == {}
        return got, time.monotonic() - t0

    got, took = cycle()
    assert 0.3 <= took < 2.0  # one deadline, not the hang
    assert {k[2] for k in got if k[0] in FAMS} == {(("mountpoint", "/healthy"),)}
    assert got[("kpod_fs_stuck_mounts", 1000, ())] == 1
    assert [r.message for r in caplog.records if "has not returned" in r.message] and \
        "/vol" in caplog.records[-1].message

    got, took = cycle()
    assert took < 0.3 and calls.read_text() == "x"  # skipped: no second call, no new child
    assert got[("kpod_fs_stuck_mounts", 1000, ())] == 1
    assert (FAMS[0], 1000, (("mountpoint", "/healthy"),)) in got

    gate.touch()
    time.sleep(0.2)
    got, _ = cycle()  # the cycle that sees the call has returned measures it again
    assert any(" returned after" in r.message for r in caplog.records)
    assert got[("kpod_fs_stuck_mounts", 1000, ())] == 0
    vfs = os.statvfs(volume)
    assert got[("kpod_fs_capacity_bytes", 1000, (("mountpoint", "/vol"),))] == \
        vfs.f_blocks * vfs.f_frsize
    assert len([r for r in caplog.records if "has not returned" in r.message]) == 1
    collector.close()

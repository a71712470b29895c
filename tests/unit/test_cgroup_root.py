"""cgroup v2 root detection, including a hybrid host's tree mounted into a pod."""

from __future__ import annotations

from pathlib import Path

import pytest

from kpodmetrics.pods import cgroupfs


def test_override_of_a_hybrid_tree_picks_unified(tmp_path: Path) -> None:
    (tmp_path / "memory").mkdir()
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("")
    assert cgroupfs.detect_root(str(tmp_path)) == str(tmp_path / "unified")


def test_override_of_a_v2_tree_is_used_as_is(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu io memory")
    (tmp_path / "unified").mkdir()
    assert cgroupfs.detect_root(str(tmp_path)) == str(tmp_path)


def test_missing_override_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(cgroupfs.CgroupRootNotFound, match="KPOD_CGROUP_ROOT"):
        cgroupfs.detect_root(str(tmp_path / "nope"))


def test_walk_yields_ids_equal_to_inodes(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    got = dict(cgroupfs.walk(str(tmp_path)))
    assert got == {"/": tmp_path.stat().st_ino, "/a": (tmp_path / "a").stat().st_ino,
                   "/a/b": (tmp_path / "a" / "b").stat().st_ino}

"""What one cycle reads: a pod's processes are looked up once for every collector that
needs them, and a seq file's short read ends its reading."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kpodmetrics.collectors.base import CollectContext
from kpodmetrics.collectors.files.support import files
from kpodmetrics.collectors.files.support.procs import pids_by_dir
from kpodmetrics.collectors.files.support.targets import pod_groups
from tests.unit.test_cgfiles_helpers import standalone_ref


def test_second_collector_of_a_cycle_reads_nothing_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "cgroup.procs").write_text("11\n12\n")
    (tmp_path / "a" / "extra").mkdir()  # not a target: listed as a candidate
    (tmp_path / "a" / "extra" / "cgroup.procs").write_text("13\n")
    ctx = CollectContext(targets=[standalone_ref(tmp_path / "a", 1, "/a")], cgroup_root="/")
    opened: list[str] = []
    real_open = os.open
    monkeypatch.setattr(files.os, "open", lambda p, *a: (opened.append(p), real_open(p, *a))[1])
    known = {r.path for r in ctx.targets}
    [group] = pod_groups(ctx.targets)
    first = list(pids_by_dir(group, known, ctx, "iface"))
    second = list(pids_by_dir(group, known, ctx, "fs"))
    assert first == second == [(str(tmp_path / "a"), [11, 12]),
                               (str(tmp_path / "a" / "extra"), [13])]
    assert sorted(opened) == [str(tmp_path / "a" / "cgroup.procs"),
                              str(tmp_path / "a" / "extra" / "cgroup.procs")]
    # a new cycle (a new context) reads again
    ctx2 = CollectContext(targets=ctx.targets, cgroup_root="/")
    list(pids_by_dir(group, known, ctx2, "iface"))
    assert len(opened) == 4


def test_an_unreadable_cgroup_procs_is_counted_by_each_collector(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()  # no cgroup.procs: ENOENT
    ctx = CollectContext(targets=[standalone_ref(tmp_path / "a", 1, "/a")], cgroup_root="/")
    [group] = pod_groups(ctx.targets)
    for name in ("iface", "fs"):
        assert list(pids_by_dir(group, {str(tmp_path / "a")}, ctx, name)) == []
    assert ctx.errors == {"iface": 1, "fs": 1}


class Reads:
    """os.read returning the given chunk sizes, then EOF."""

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = sizes
        self.calls = 0

    def __call__(self, fd: int, n: int) -> bytes:
        self.calls += 1
        if not self.sizes:
            return b""
        return b"x" * min(self.sizes.pop(0), n)


@pytest.mark.parametrize(("sizes", "record_max", "want_len", "want_calls"), [
    ([100], files.CGROUP_RECORD_MAX, 100, 1),  # short by more than a record: the end
    ([100], None, 100, 2),  # no record bound: read until EOF
    # short by less than a record: the next one did not fit, read on
    ([65536 - 100, 500], files.CGROUP_RECORD_MAX, 65436 + 500, 2),
    ([65536, 65536, 7], files.CGROUP_RECORD_MAX, 2 * 65536 + 7, 3),
])
def test_seq_file_short_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sizes: list[int],
                             record_max: int | None, want_len: int, want_calls: int) -> None:
    (tmp_path / "f").write_text("")
    fake = Reads(sizes)
    monkeypatch.setattr(files.os, "read", fake)
    assert len(files.read_bounded(str(tmp_path / "f"), record_max=record_max)) == want_len
    assert fake.calls == want_calls


def test_missing_files_of_a_present_cgroup_cost_one_directory_check(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kpodmetrics.collectors.files.support.percgroup import PerCgroupCollector

    class Three(PerCgroupCollector):
        name = "three"
        files = ("a.stat", "b.stat", "c.stat")

        def samples_for(self, ref, contents, ctx):  # type: ignore[no-untyped-def]
            self.got = sorted(contents)
            return []

    (tmp_path / "cg").mkdir()
    (tmp_path / "cg" / "b.stat").write_text("x 1\n")
    checks: list[str] = []
    real = files.os.path.isdir
    monkeypatch.setattr(files.os.path, "isdir", lambda p: (checks.append(p), real(p))[1])
    c = Three()
    ctx = CollectContext(targets=[standalone_ref(tmp_path / "cg", 1, "/cg")], cgroup_root="/")
    list(c.collect(ctx))
    assert c.got == ["b.stat"] and checks == [str(tmp_path / "cg")] and ctx.errors == {}
    # a cgroup that is gone: its first missing file says so, one error, nothing read
    checks.clear()
    ctx = CollectContext(targets=[standalone_ref(tmp_path / "gone", 2, "/gone")],
                         cgroup_root="/")
    assert list(c.collect(ctx)) == [] and ctx.errors == {"three": 1}

"""io.stat lists a device without stats as a bare `MAJ:MIN` (5.15+ prints the name
before it knows there are stats): that is no read error and no series."""

from __future__ import annotations

from pathlib import Path

from kpodmetrics.collectors.files import io_stat as diskio

from .test_cgfiles_helpers import ctx_for, k8s_refs, scalar


def test_bare_device_line_is_neither_an_error_nor_a_series(tmp_path: Path) -> None:
    pod = tmp_path / "pod"
    (pod / "ctr-a").mkdir(parents=True)
    (pod / "ctr-a" / "io.stat").write_text(
        "8:0 \n259:0 rbytes=4096 wbytes=512 rios=1 wios=1 dbytes=0 dios=0\n7:3\n")
    refs = k8s_refs(pod, ["ctr-a"], with_pod=False)
    col = diskio.DiskIOCollector(sys_root=str(tmp_path / "nosys"))
    for _ in range(3):  # every cycle
        ctx = ctx_for(refs)
        got = scalar(col.collect(ctx))
        assert ctx.errors == {}
        assert {labels for _fam, _cg, labels in got} == {(("device", "259:0"),)}
        assert got[("kpod_disk_read_bytes_total", 1001, (("device", "259:0"),))] == 4096


def test_a_device_with_garbage_after_it_is_still_an_error(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "io.stat").write_text("8:0 rbytes\n")
    ctx = ctx_for(k8s_refs(tmp_path, ["c"], with_pod=False))
    assert scalar(diskio.DiskIOCollector(str(tmp_path)).collect(ctx)) == {}
    assert ctx.errors == {"diskio": 1}

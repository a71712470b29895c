"""The per-cgroup collectors on fixture trees: values equal to the fixture files,
no double counting between pod and container levels, absent files are silent, bad
files are counted."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kpodmetrics.collectors.files import cpu_stat as cpustat
from kpodmetrics.collectors.files import io_stat as diskio
from kpodmetrics.collectors.files import memory, pressure
from kpodmetrics.samples import Kind

from .test_cgfiles_helpers import FIXTURES, ctx_for, k8s_refs, scalar, standalone_ref


@pytest.fixture()
def sysfs(tmp_path: Path) -> Path:
    """A /sys with one named block device (8:0 -> sda) and one symlink-only (253:1)."""
    root = tmp_path / "sys"
    (root / "devices" / "sda").mkdir(parents=True)
    (root / "devices" / "sda" / "uevent").write_text(
        "MAJOR=8\nMINOR=0\nDEVNAME=sda\nDEVTYPE=disk\n")
    (root / "devices" / "dm-1").mkdir()
    (root / "dev" / "block").mkdir(parents=True)
    (root / "dev" / "block" / "8:0").symlink_to(root / "devices" / "sda")
    (root / "dev" / "block" / "253:1").symlink_to(root / "devices" / "dm-1")
    return root


def test_diskio_container_level_only_with_device_names(sysfs: Path) -> None:
    refs = k8s_refs(FIXTURES / "v4.15/pod", ["ctr-a", "ctr-b"])
    col = diskio.DiskIOCollector(sys_root=str(sysfs))
    ctx = ctx_for(refs)
    got = scalar(col.collect(ctx))
    assert ctx.errors == {}
    sda, dm = (("device", "sda"),), (("device", "dm-1"),)
    assert got == {
        ("kpod_disk_read_bytes_total", 1001, sda): 1459200,
        ("kpod_disk_written_bytes_total", 1001, sda): 314773504,
        ("kpod_disk_reads_total", 1001, sda): 192,
        ("kpod_disk_writes_total", 1001, sda): 353,
        ("kpod_disk_read_bytes_total", 1001, dm): 4096,
        ("kpod_disk_written_bytes_total", 1001, dm): 0,
        ("kpod_disk_reads_total", 1001, dm): 1,
        ("kpod_disk_writes_total", 1001, dm): 0,
        ("kpod_disk_read_bytes_total", 1002, sda): 0,
        ("kpod_disk_written_bytes_total", 1002, sda): 8192,
        ("kpod_disk_reads_total", 1002, sda): 0,
        ("kpod_disk_writes_total", 1002, sda): 2,
        # the pod level carries what its containers do not: this fixture's pod io.stat
        # (9000 each) is below its containers' sum, so nothing is left (never negative)
        ("kpod_disk_read_bytes_total", 1000, sda): 0,
        ("kpod_disk_written_bytes_total", 1000, sda): 0,
        ("kpod_disk_reads_total", 1000, sda): 0,
        ("kpod_disk_writes_total", 1000, sda): 0,
    }


def test_pod_level_is_read_when_no_container_is_a_target(sysfs: Path) -> None:
    refs = k8s_refs(FIXTURES / "v4.15/pod", [])
    got = scalar(diskio.DiskIOCollector(str(sysfs)).collect(ctx_for(refs)))
    assert got[("kpod_disk_read_bytes_total", 1000, (("device", "sda"),))] == 9000


def test_diskio_unknown_device_falls_back_to_number(tmp_path: Path) -> None:
    refs = k8s_refs(FIXTURES / "v5.10/pod", ["ctr-a"])
    samples = list(diskio.DiskIOCollector(str(tmp_path)).collect(ctx_for(refs)))
    assert {s.labels for s in samples} == {(("device", "259:0"),)}
    assert all(s.kind is Kind.CUMULATIVE for s in samples)


def test_diskio_malformed_lines_counted(sysfs: Path) -> None:
    ctx = ctx_for(k8s_refs(FIXTURES / "broken/pod", ["ctr-a"]))
    got = scalar(diskio.DiskIOCollector(str(sysfs)).collect(ctx))
    assert ctx.errors == {"diskio": 2}
    assert got[("kpod_disk_read_bytes_total", 1001, (("device", "sda"),))] == 100
    assert ("kpod_disk_writes_total", 1001, (("device", "8:2"),)) not in got
    assert got[("kpod_disk_reads_total", 1001, (("device", "8:2"),))] == 7


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("v4.15", {"usage": 1.5, "user": 1.0, "system": 0.5, "periods": 20,
                   "throttled_periods": 3, "throttled": 0.25}),
        ("v5.10", {"usage": 7.0, "user": 4.0, "system": 3.0, "periods": 0,
                   "throttled_periods": 0, "throttled": 0.0}),
        ("v6.8", {"usage": 123.456789, "user": 100.0, "system": 23.456789, "periods": 1000,
                  "throttled_periods": 250, "throttled": 5.5}),
    ],
)
def test_cpustat_variants(variant: str, expected: dict[str, float]) -> None:
    ctx = ctx_for(k8s_refs(FIXTURES / variant / "pod", ["ctr-a"]))
    got = scalar(cpustat.CpuStatCollector().collect(ctx))
    names = {
        "usage": "kpod_cpu_usage_seconds_total", "user": "kpod_cpu_user_seconds_total",
        "system": "kpod_cpu_system_seconds_total", "periods": "kpod_cpu_periods_total",
        "throttled_periods": "kpod_cpu_throttled_periods_total",
        "throttled": "kpod_cpu_throttled_seconds_total",
    }
    assert got == {(names[k], 1001, ()): pytest.approx(v, abs=1e-9) for k, v in expected.items()}
    assert ctx.errors == {}


def test_cpustat_without_bandwidth_keys_and_malformed(tmp_path: Path) -> None:
    ctx = ctx_for(k8s_refs(FIXTURES / "broken/pod", ["ctr-a"]))
    got = scalar(cpustat.CpuStatCollector().collect(ctx))
    assert got == {("kpod_cpu_usage_seconds_total", 1001, ()): 1.0}
    assert ctx.errors == {"cpustat": 3}  # two malformed lines + a negative reading


def test_memory_variants() -> None:
    ctx = ctx_for(k8s_refs(FIXTURES / "v6.8/pod", ["ctr-a"]))
    got = scalar(memory.MemoryCollector().collect(ctx))
    ev = {e: v for e, v in (("low", 0), ("high", 12), ("max", 5), ("oom", 2), ("oom_kill", 1))}
    assert got == {
        ("kpod_mem_usage_bytes", 1001, ()): 268435456,
        ("kpod_mem_peak_bytes", 1001, ()): 536870912,
        ("kpod_mem_swap_bytes", 1001, ()): 0,
        ("kpod_mem_anon_bytes", 1001, ()): 201326592,
        ("kpod_mem_file_bytes", 1001, ()): 50331648,
        ("kpod_mem_cgroup_major_page_faults_total", 1001, ()): 789,
        **{("kpod_mem_events_total", 1001, (("event", e),)): v for e, v in ev.items()},
    }  # oom_group_kill is not one of the exported events
    assert ctx.errors == {}
    # v5.10: no memory.peak, no memory.stat: those series are simply absent
    got_old = scalar(memory.MemoryCollector().collect(ctx_for(k8s_refs(FIXTURES / "v5.10/pod",
                                                                       ["ctr-a"]))))
    assert {k[0] for k in got_old} == {"kpod_mem_usage_bytes", "kpod_mem_swap_bytes",
                                       "kpod_mem_events_total"}


def test_memory_malformed() -> None:
    ctx = ctx_for(k8s_refs(FIXTURES / "broken/pod", ["ctr-a"]))
    got = scalar(memory.MemoryCollector().collect(ctx))
    assert got == {("kpod_mem_events_total", 1001, (("event", "low"),)): 0,
                   ("kpod_mem_events_total", 1001, (("event", "oom"),)): 3}
    assert ctx.errors == {"memory": 2}  # memory.current "max" and "high" without value


def test_pressure_with_and_without_cpu_full() -> None:
    ctx = ctx_for(k8s_refs(FIXTURES / "v5.10/pod", ["ctr-a"]))
    got = scalar(pressure.PressureCollector().collect(ctx))
    assert got == {
        ("kpod_pressure_cpu_waiting_seconds_total", 1001, ()): 1.234567,
        ("kpod_pressure_memory_waiting_seconds_total", 1001, ()): 0.25,
        ("kpod_pressure_memory_stalled_seconds_total", 1001, ()): 0.125,
        ("kpod_pressure_io_waiting_seconds_total", 1001, ()): 3.0,
        ("kpod_pressure_io_stalled_seconds_total", 1001, ()): 1.5,
    }
    got_new = scalar(pressure.PressureCollector().collect(ctx_for(
        k8s_refs(FIXTURES / "v6.8/pod", ["ctr-a"]))))
    assert got_new == {("kpod_pressure_cpu_waiting_seconds_total", 1001, ()): 2.0,
                       ("kpod_pressure_cpu_stalled_seconds_total", 1001, ()): 1.0}


def test_absent_files_are_not_errors(tmp_path: Path) -> None:
    """A hybrid host's unified tree: directories with cgroup.procs and nothing else."""
    cg = tmp_path / "unified" / "svc"
    cg.mkdir(parents=True)
    (cg / "cgroup.procs").write_text("")
    refs = [standalone_ref(cg, 7, "/svc")]
    for col in (diskio.DiskIOCollector(str(tmp_path)), memory.MemoryCollector(),
                cpustat.CpuStatCollector(), pressure.PressureCollector()):
        ctx = ctx_for(refs)
        assert list(col.collect(ctx)) == []
        assert ctx.errors == {}


def test_vanished_cgroup_and_unreadable_file_are_counted(tmp_path: Path) -> None:
    pod = tmp_path / "pod"
    shutil.copytree(FIXTURES / "v6.8/pod", pod)
    (pod / "ctr-a" / "memory.peak").unlink()
    (pod / "ctr-a" / "memory.peak").mkdir()  # reading it fails with EISDIR
    refs = k8s_refs(pod, ["ctr-a", "gone"])  # "gone" was listed but no longer exists
    ctx = ctx_for(refs)
    got = scalar(memory.MemoryCollector().collect(ctx))
    assert ctx.errors == {"memory": 2}  # one for the vanished cgroup, one for the bad file
    assert ("kpod_mem_peak_bytes", 1001, ()) not in got
    assert got[("kpod_mem_usage_bytes", 1001, ())] == 268435456


def test_standalone_reports_every_cgroup() -> None:
    pod = FIXTURES / "v4.15/pod"
    refs = [standalone_ref(pod, 1, "/pod"), standalone_ref(pod / "ctr-a", 2, "/pod/ctr-a")]
    got = scalar(cpustat.CpuStatCollector().collect(ctx_for(refs)))
    assert got[("kpod_cpu_usage_seconds_total", 2, ())] == 1.5
    assert ("kpod_cpu_usage_seconds_total", 1, ()) not in got  # the fixture pod dir has no cpu.stat


def test_create_factories() -> None:
    from kpodmetrics.config import Settings

    for mod, name in ((diskio, "diskio"), (memory, "memory"), (cpustat, "cpustat"),
                      (pressure, "pressure")):
        col = mod.create(Settings())  # type: ignore[attr-defined]
        assert col.name == name
        col.start()
        assert col.programs() == [] and col.map_health() == []
        col.close()

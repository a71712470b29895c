"""Counter semantics through the real SeriesStore: kernel totals are exported as
cumulative counters that advance by the kernel's differences, never re-added each
cycle, and a reset (a recreated cgroup or netns) does not make them go backwards."""

from __future__ import annotations

from pathlib import Path

from kpodmetrics.collectors.files import cpu_stat as cpustat
from kpodmetrics.collectors.files import net_dev as iface
from kpodmetrics.collectors.files import pressure
from kpodmetrics.export.store import SeriesStore
from kpodmetrics.pods.owner import CgroupRef, Owner

from .test_cgfiles_helpers import ctx_for, standalone_ref


class FixedResolver:
    owner_label_names = ("cgroup",)

    def __init__(self, refs: list[CgroupRef]) -> None:
        self.by_id = {r.cgroup_id: r.owner for r in refs}

    def refresh(self) -> None: ...

    def resolve(self, cgroup_id: int) -> Owner | None:
        return self.by_id.get(cgroup_id)

    def targets(self) -> list[CgroupRef]:
        return []

    def ignored(self, cgroup_id: int) -> bool:

        return False


    def drain_removed(self) -> list[Owner]:
        return []


def value(store: SeriesStore, family: str) -> float:
    for fam, rows in store.snapshot():
        if fam.name == family:
            assert len(rows) == 1
            return rows[0].value
    raise AssertionError(f"{family} not exported")


def test_cpu_stat_cumulative_and_reset(tmp_path: Path) -> None:
    cg = tmp_path / "cg"
    cg.mkdir()
    refs = [standalone_ref(cg, 9, "/cg")]
    store = SeriesStore()
    col = cpustat.CpuStatCollector()
    # kernel running totals over five cycles; the drop at cycle 4 is a recreated cgroup
    readings = [1_000_000, 1_000_000, 3_500_000, 250_000, 750_000]
    expected = [1.0, 1.0, 3.5, 3.75, 4.25]  # independent arithmetic of the increments
    for raw, want in zip(readings, expected, strict=True):
        (cg / "cpu.stat").write_text(f"usage_usec {raw}\nuser_usec 0\nsystem_usec 0\n")
        store.apply(col.collect(ctx_for(refs)), FixedResolver(refs))
        assert abs(value(store, "kpod_cpu_usage_seconds_total") - want) < 1e-9


def test_psi_unchanged_total_is_not_re_added(tmp_path: Path) -> None:
    cg = tmp_path / "cg"
    cg.mkdir()
    (cg / "io.pressure").write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=2000000\n"
                                    "full avg10=0.00 avg60=0.00 avg300=0.00 total=500000\n")
    refs = [standalone_ref(cg, 3, "/cg")]
    store = SeriesStore()
    col = pressure.PressureCollector()
    for _ in range(4):
        store.apply(col.collect(ctx_for(refs)), FixedResolver(refs))
    assert value(store, "kpod_pressure_io_waiting_seconds_total") == 2.0
    assert value(store, "kpod_pressure_io_stalled_seconds_total") == 0.5


NET_DEV = ("Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n"
           "  eth0: {rx} 1 0 0 0 0 0 0 {tx} 1 0 0 0 0 0 0\n")


def test_iface_new_namespace_is_a_new_source(tmp_path: Path) -> None:
    """A pod sandbox restart brings a new netns whose counters start at zero: the
    series keeps growing by what the new namespace counts."""
    proc = tmp_path / "proc"
    for pid in (1, 100, 200):
        (proc / str(pid) / "ns").mkdir(parents=True)
        (proc / str(pid) / "net").mkdir()
        (proc / str(pid) / "ns" / "net").write_text(str(pid))
    cg = tmp_path / "cg"
    cg.mkdir()
    refs = [standalone_ref(cg, 4, "/cg")]
    store = SeriesStore()
    col = iface.IfaceCollector()
    steps = [(100, 1000), (100, 1500), (200, 300), (200, 400)]
    expected = [1000, 1500, 1800, 1900]
    for (pid, rx), want in zip(steps, expected, strict=True):
        (cg / "cgroup.procs").write_text(f"{pid}\n")
        (proc / str(pid) / "net" / "dev").write_text(NET_DEV.format(rx=rx, tx=0))
        ctx = ctx_for(refs, str(proc))
        store.apply(col.collect(ctx), FixedResolver(refs))
        assert ctx.errors == {}
        assert value(store, "kpod_net_iface_rx_bytes_total") == want

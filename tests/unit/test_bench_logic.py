"""Benchmark harness: statistics, interleaving, synthetic map entries, target verdicts
and report rendering, on made-up results (no kernel, no timing)."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from benchmarks import docs, mapfill, report, slowdown, stats, targets


def test_summary_and_same_round_ratios() -> None:
    s = stats.summarize([3.0, 1.0, 2.0, float("nan")])
    assert s is not None and (s.median, s.low, s.high, s.n) == (2.0, 1.0, 3.0, 3)
    assert stats.summarize([]) is None
    assert stats.ratios([2.0, 3.0], [1.0, 0.0]) == [2.0]  # a zero baseline is skipped
    assert stats.pct(1.22) == "+22.0%"


def test_interleaving_rotates_and_reverses() -> None:
    cfgs = slowdown.configs(["minimal"], [])
    cfgs.append(slowdown.Config("x", "peer"))
    orders = [[c.name for c in slowdown._order(cfgs, r)] for r in range(3)]
    assert all(sorted(o) == sorted(orders[0]) for o in orders)
    assert orders[0][0] == "baseline" and orders[1][-1] == "kpod-minimal"
    assert len({tuple(o) for o in orders}) == 3


MAPS: dict[int, dict[str, object]] = {
    1: {"type": "lru_hash", "name": "cpu_stats", "bytes_key": 8, "bytes_value": 24,
        "max_entries": 4096},
    2: {"type": "hash", "name": "cpu_start", "bytes_key": 4, "bytes_value": 8,
        "max_entries": 16384},
    3: {"type": "lru_hash", "name": "sys_stats", "bytes_key": 16, "bytes_value": 20,
        "max_entries": 6},
    4: {"type": "array", "name": "cpu_health", "bytes_key": 4, "bytes_value": 16,
        "max_entries": 2},
    5: {"type": "hash", "name": "sys_start", "bytes_key": 8, "bytes_value": 16,
        "max_entries": 100},
    6: {"type": "lru_percpu_hash", "name": "other_stats", "bytes_key": 8, "bytes_value": 12,
        "max_entries": 10},
}


def test_only_per_cgroup_metric_maps_are_filled() -> None:
    chosen = mapfill.choose(MAPS, frozenset(MAPS), {"cpu_stats", "cpu_start", "sys_stats",
                                                    "sys_start", "other_stats"})
    assert [t.name for t in chosen] == ["cpu_stats", "sys_stats", "other_stats"]
    # a map the agent does not report as a metric map is left alone
    assert [t.name for t in mapfill.choose(MAPS, frozenset({1, 3}), {"cpu_stats"})] == [
        "cpu_stats"]


def test_keys_carry_the_cgroup_id_and_sub_keys_up_to_capacity() -> None:
    sys_t = next(t for t in mapfill.choose(MAPS, frozenset({3}), set()))
    keys = mapfill.keys_for(sys_t, [100, 200])
    assert len(keys) == 6  # 2 cgroups x 4 sub-keys, capped at max_entries 6
    assert struct.unpack("<QI", keys[5][:12]) == (200, 1)
    assert all(len(k) == 16 for k in keys)
    cpu_t = next(t for t in mapfill.choose(MAPS, frozenset({1}), set()))
    assert mapfill.keys_for(cpu_t, [7]) == [struct.pack("<Q", 7)]


def test_values_are_ones_and_percpu_values_are_strided() -> None:
    cpu_t = next(t for t in mapfill.choose(MAPS, frozenset({1}), set()))
    v = mapfill.value_bytes(cpu_t, ncpu=4)
    assert struct.unpack("<3Q", v) == (1, 1, 1)
    per = next(t for t in mapfill.choose(MAPS, frozenset({6}), set()))
    pv = mapfill.value_bytes(per, ncpu=3)
    assert len(pv) == 16 * 3  # 12-byte values rounded up to 8-byte slots, one per CPU


def _slow(kpod_pipe: float, peer_pipe: float) -> dict[str, Any]:
    def cfg(kind: str, profile: str, ratio: float | None) -> dict[str, Any]:
        r = {"median": ratio, "low": ratio, "high": ratio, "n": 3} if ratio else None
        return {"kind": kind, "profile": profile, "down": "", "startup_s": [0.5, 0.7, 0.6],
                "collectors": {"cpu": {"up": True}, "net": {"up": False, "down": [
                    {"program": "", "reason": "no hook"}]}},
                "maps": [{"name": "cpu_stats", "type": "lru_hash", "max_entries": 4096,
                          "bytes_memlock": 9_000_000}] if kind == "kpod" else [],
                "workloads": {"sched-pipe": {"unit": "op", "ratio": r,
                                             "ns_per_op": {"median": 10.0, "low": 9.0,
                                                           "high": 11.0, "n": 3}}}}
    return {"baseline": cfg("baseline", "", None),
            "kpod-standard": cfg("kpod", "standard", kpod_pipe),
            "peer-runqlat": cfg("peer", "", peer_pipe)}


def _results(kpod_pipe: float = 1.10, peer_pipe: float = 1.20) -> dict[str, Any]:
    return {
        "slowdown": _slow(kpod_pipe, peer_pipe),
        "kernel_cost": {"programs": [
            {"owner": "kpod-comprehensive", "program": "kpod_sched_switch", "run_cnt": 10,
             "run_time_ns": 5000, "ns_per_event": 500.0},
            {"owner": "runqlat", "program": "sched_switch", "run_cnt": 10,
             "run_time_ns": 4000, "ns_per_event": 400.0}], "peers_down": {"tcprtt": "no"}},
        "scale": [{"cgroups": 1000, "profile": "standard", "cpu_per_cycle_s": 0.25,
                   "floor": {"ratio": 5.0, "floor_cpu_per_cycle_s": 0.05,
                             "opens_per_cycle": 7000.0},
                   "wall_per_cycle_s": 0.3, "rss_kib": 100 * 1024, "startup_s": 1.0,
                   "series": 5, "collector_s": {"cpu": 0.1, "memory": 0.2},
                   "map_entries": {"cpu_stats": 1000.0},
                   "pyspy": {"samples": 10, "idle_samples": 2,
                             "self": [{"frame": "f (x.py:1)", "samples": 8,
                                       "share_of_busy": 1.0}]}}],
    }


def test_verdicts_met_missed_and_not_measured() -> None:
    v = {x.target: x for x in targets.evaluate(_results())}
    pipe = v["sched-pipe slowdown kpod-standard <= peer-runqlat's"]
    assert pipe.status == "met" and pipe.gap == "10.0 pp under"
    assert v["sched-pipe slowdown kpod-comprehensive <= peer-syscount-L's"].status == \
        "not measured"
    sw = v["ns per sched_switch event <= runqlat's program"]
    assert sw.status == "missed" and sw.gap.startswith("100 ns") and sw.closing
    cyc = v["cycle CPU <= 3x the C floor of its files at 1,000 cgroups, standard"]
    assert cyc.status == "missed" and cyc.gap == "2.0x over" and cyc.measured.startswith(
        "5.0x (250 ms against 50.0 ms for 7,000 files)")
    assert "memory 200 ms" in cyc.closing and "f (x.py:1)" in cyc.closing
    assert v["RSS <= 100 MiB at 1,000 cgroups"].status == "met"
    assert v["RSS <= 60 MiB idle, standalone"].status == "not measured"
    mp = v["kernel map memory <= 8 MB with defaults"]
    assert mp.status == "missed" and mp.gap == "1.00 MB over" and "cpu_stats" in mp.closing
    assert v["first metrics <= 2 s after start"].measured.startswith("0.60 s")


def test_slower_than_peer_is_missed_by_percentage_points() -> None:
    v = targets.evaluate(_results(kpod_pipe=1.5, peer_pipe=1.2))[0]
    assert v.status == "missed" and v.gap == "30.0 pp over" and v.measured == "+50.0%"


def test_tables_and_document_render(tmp_path: Any) -> None:
    res = _results()
    res["settings"] = {"rounds": 3, "sizes": [1000]}
    verdicts = targets.evaluate(res)
    text = docs.tables(res, verdicts)
    assert "| kpod-standard | +10.0% [+10..+10] |" in text
    assert "MISSED" in text and "kpod_sched_switch" in text
    assert report.plots({}, tmp_path) == []  # nothing to plot, nothing written
    doc = tmp_path / "docs" / "performance.md"
    docs.write(res, verdicts, tmp_path / "results", doc)
    body = doc.read_text()
    assert "make bench" in body and "collector `net`: no hook" in body
    assert "py-spy, 1,000 cgroups" in body


def test_plots_are_pngs_when_matplotlib_is_there(tmp_path: Any) -> None:
    pytest.importorskip("matplotlib")
    made = report.plots(_results(), tmp_path)
    assert set(made) == {"slowdown.png", "kernel_ns_per_event.png", "scale.png",
                         "map_memory.png"}
    assert all((tmp_path / m).read_bytes()[:4] == b"\x89PNG" for m in made)


def test_export_table_from_the_export_benchmark() -> None:
    row = {"lines": 70007, "series": 13125, "render_s": 0.17, "scrape_p50_ms": 107.0,
           "scrape_p99_ms": 270.0, "rss_hwm_kib": 170 * 1024}
    text = report.export_table({"command": "benchmarks/export_bench.py --out x",
                                "result": {"rows": [row]}})
    assert "| 70,007 | 13,125 | 170 | 107 | 270 | 170 |" in text
    assert report.export_table({"skipped": "absent"}) == "not run: absent"
    assert report.export_table({}) == ""

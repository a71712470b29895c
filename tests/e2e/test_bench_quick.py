"""`make bench-quick` as CI runs it: a smoke test that the benchmark harness works end to
end (agent per profile, peers, BPF statistics, cgroups, report) and cleans up after
itself. No timing is asserted: CI machines are small and shared."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require, require_root

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
def test_bench_quick_runs_and_cleans_up(tmp_path: Path) -> None:
    require_root()
    require(os.path.exists("/sys/fs/cgroup/unified") or os.path.exists(
        "/sys/fs/cgroup/cgroup.controllers"), "needs a cgroup v2 hierarchy")
    with open("/proc/sys/kernel/bpf_stats_enabled") as fh:
        stats_before = fh.read().strip()
    env = {**os.environ, "KPOD_BENCH_OUT": str(tmp_path)}
    r = subprocess.run(["make", "bench-quick"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((tmp_path / "bench_quick.json").read_text())
    assert res["failures"] == []
    assert res["cleanup"]["leaked"] == []
    # every phase produced data
    assert res["slowdown"]["baseline"]["workloads"]
    assert any(c["kind"] == "kpod" and not c["down"] for c in res["slowdown"].values())
    assert any(p["owner"].startswith("kpod-") for p in res["kernel_cost"]["programs"])
    assert res["scale"] and all("error" not in row for row in res["scale"])
    assert len(res["targets"]) == 9
    # the C floor and the resident-memory phase ran (their figures are for make bench)
    floors = [row["floor"] for row in res["scale"] if row.get("floor")]
    # every floor traced real opens and replayed them; a ratio exists where both CPU
    # figures are above the clock tick (at the quick sizes the agent's cycle may not be)
    assert floors and all("error" not in f and f["opens_per_cycle"] > 0 for f in floors), floors
    assert all(f["ratio"] > 1 if f["ratio"] is not None else f["no_ratio"] for f in floors), \
        floors
    assert all(res["rss"][k].get("VmRSS") for k in ("standalone_idle", "kubernetes")), res["rss"]
    assert "## Targets" in r.stdout
    # the run left nothing behind
    with open("/proc/sys/kernel/bpf_stats_enabled") as fh:
        assert fh.read().strip() == stats_before
    from benchmarks import cgroups

    assert cgroups.leftovers() == []

"""The agent serves cgroup-file families for a cgroup built from fixture trees
(configurable cgroup root): values equal the fixture; later readings move counters by
the difference only (never re-added), and a counter reset counts from zero again."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.e2e.agent_util import AgentProc, run_agent

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "cgroup" / "v6.8" / "pod"


def series(agent: AgentProc, name: str, cgroup: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for n, lab, v in agent.samples():
        if n == name and lab.get("cgroup") == cgroup:
            out[tuple(sorted((k, x) for k, x in lab.items() if k not in ("cgroup", "node")))] = v
    return out


def one(agent: AgentProc, name: str, cgroup: str, **labels: str) -> float:
    found = series(agent, name, cgroup)
    key = tuple(sorted(labels.items()))
    assert key in found, f"{name}{labels} for {cgroup} missing; have {found}"
    return found[key]


def wait_cycle(agent: AgentProc, name: str, cgroup: str, want: float, **labels: str) -> float:
    deadline = time.monotonic() + 10
    while True:
        got = series(agent, name, cgroup).get(tuple(sorted(labels.items())))
        if got == pytest.approx(want) or time.monotonic() > deadline:
            return -1.0 if got is None else got
        time.sleep(0.2)


@pytest.mark.e2e
def test_fixture_cgroup_families_and_counter_semantics(tmp_path: Path) -> None:
    root = tmp_path / "cgroot"
    (root / "pod").mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu io memory\n")
    shutil.copytree(FIXTURE / "ctr-a", root / "pod" / "ctr-a")
    cg = "/pod/ctr-a"
    with run_agent("--mode", "standalone", "--profile", "standard", "--cgroup-root", str(root),
                   "--collectors", "cpu=off,mem=off,net=off", "--poll-interval", "0.5s") as agent:
        disk = series(agent, "kpod_disk_read_bytes_total", cg)
        assert list(disk.values()) == [1048576.0]
        (device,) = [dict(k)["device"] for k in disk]
        assert one(agent, "kpod_disk_written_bytes_total", cg, device=device) == 2097152
        assert one(agent, "kpod_disk_reads_total", cg, device=device) == 16
        assert one(agent, "kpod_disk_writes_total", cg, device=device) == 32
        assert one(agent, "kpod_cpu_usage_seconds_total", cg) == pytest.approx(123.456789)
        assert one(agent, "kpod_cpu_throttled_seconds_total", cg) == pytest.approx(5.5)
        assert one(agent, "kpod_cpu_throttled_periods_total", cg) == 250
        assert one(agent, "kpod_pressure_cpu_waiting_seconds_total", cg) == pytest.approx(2.0)
        assert one(agent, "kpod_pressure_cpu_stalled_seconds_total", cg) == pytest.approx(1.0)
        assert one(agent, "kpod_mem_events_total", cg, event="oom_kill") == 1
        mem_now = int((root / "pod/ctr-a/memory.current").read_text())
        assert one(agent, "kpod_mem_usage_bytes", cg) == mem_now

        # several cycles pass: the kernel's running total is exported as is, not re-added
        time.sleep(1.5)
        assert one(agent, "kpod_disk_read_bytes_total", cg, device=device) == 1048576
        # the kernel's total grows by 4096: the counter follows exactly
        stat = (root / "pod/ctr-a/io.stat")
        stat.write_text(stat.read_text().replace("rbytes=1048576", "rbytes=1052672"))
        assert wait_cycle(agent, "kpod_disk_read_bytes_total", cg, 1052672,
                          device=device) == 1052672
        # the source restarts from a small value: counted from zero again, never negative
        stat.write_text(stat.read_text().replace("rbytes=1052672", "rbytes=100"))
        assert wait_cycle(agent, "kpod_disk_read_bytes_total", cg, 1052772,
                          device=device) == 1052772
        # a removed cgroup leaves the export after the grace period (default 5 s)
        shutil.rmtree(root / "pod" / "ctr-a")
        deadline = time.monotonic() + 15
        while series(agent, "kpod_disk_read_bytes_total", cg) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert series(agent, "kpod_disk_read_bytes_total", cg) == {}

"""scripts/vm/kernels_doc.py: reading the matrix's results into docs/kernels.md."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kd() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kernels_doc", ROOT / "scripts/vm/kernels_doc.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["kernels_doc"] = mod
    spec.loader.exec_module(mod)
    return mod


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="0" failures="1" skipped="1" tests="4">
<testcase classname="tests.kernel.test_cpu_runqueue" name="test_wait[batch]" time="1"/>
<testcase classname="tests.kernel.test_cpu_runqueue" name="test_wait[legacy]" time="1">
  <failure message="assert 1 &lt; 0.2">trace</failure></testcase>
<testcase classname="tests.kernel.test_v2_io" name="test_io_stat_counts" time="1">
  <skipped type="pytest.skip" message="needs the io controller">skip</skipped></testcase>
<testcase classname="tests.kernel.test_net_tcp.TestX" name="test_rtt_histogram" time="1"/>
</testsuite></testsuites>
"""

PROBE = """cpu        up           2/3 programs attached
             kpod_sched_switch: load failed: EACCES: libbpf: prog 'x' | libbpf: more
reg type unsupported for arg#0
mem        up           2/2 programs attached
blockio    down         no program of bio attached
"""


def write_run(d: Path, kernel: str, probe_json: object | None = None) -> None:
    d.mkdir(parents=True)
    (d / "kernel.txt").write_text(kernel + "\n")
    (d / "junit.xml").write_text(JUNIT)
    (d / "probe.txt").write_text(PROBE)
    (d / "seconds.txt").write_text("120\n")
    if probe_json is not None:
        (d / "probe.json").write_text(json.dumps(probe_json))


def test_junit_outcomes_and_modules(kd: ModuleType, tmp_path: Path) -> None:
    p = tmp_path / "j.xml"
    p.write_text(JUNIT)
    cases = kd.parse_junit(p)
    assert [(c.module, c.outcome) for c in cases] == [
        ("tests/kernel/test_cpu_runqueue.py", "passed"),
        ("tests/kernel/test_cpu_runqueue.py", "failed"),
        ("tests/kernel/test_v2_io.py", "skipped"),
        ("tests/kernel/test_net_tcp.py", "passed"),
    ]
    assert cases[1].message == "assert 1 < 0.2"


def test_probe_text_keeps_the_first_words_of_each_failed_program(kd: ModuleType) -> None:
    got = kd.parse_probe_text(PROBE)
    assert got["cpu"] == ("up", "2/3 programs attached; kpod_sched_switch: load failed: EACCES: "
                                "libbpf: prog 'x'")
    assert got["mem"] == ("up", "2/2 programs attached")
    assert got["blockio"][0] == "down"


def test_oracle_verdicts(kd: ModuleType, tmp_path: Path) -> None:
    write_run(tmp_path / "bookworm", "6.1.0-50-amd64")
    run = kd.load_run(tmp_path, "bookworm")
    assert run.guest_seconds == 120
    assert kd.oracle_verdict(run, "kpod_cpu_runqueue_latency_seconds") == "FAILED"
    assert kd.oracle_verdict(run, "kpod_disk_read_bytes_total") == "skipped"
    assert kd.oracle_verdict(run, "kpod_net_tcp_rtt_seconds") == "passed"
    assert kd.oracle_verdict(run, "kpod_mem_oom_kills_total") == "not run"
    assert kd.oracle_verdict(run, "kpod_no_such_family") == "no oracle test"


@pytest.mark.parametrize("layout", [
    {"collectors": [{"name": "cpu", "families": [
        {"family": "kpod_cpu_runqueue_latency_seconds", "available": True,
         "program": "kpod_sched_switch_raw", "variant": "raw_tp"}]}]},
    {"cpu": {"families": {"kpod_cpu_runqueue_latency_seconds": {
        "available": True, "program": "kpod_sched_switch_raw", "variant": "raw_tp"}}}},
])
def test_probe_json_family_entries_in_either_layout(kd: ModuleType, tmp_path: Path,
                                                    layout: object) -> None:
    write_run(tmp_path / "bullseye", "5.10.0-32-amd64", layout)
    run = kd.load_run(tmp_path, "bullseye")
    row = run.families["kpod_cpu_runqueue_latency_seconds"]
    assert (row.available, row.variant, row.program) == (True, "raw_tp", "kpod_sched_switch_raw")
    cell = kd.cell(run, "kpod_cpu_runqueue_latency_seconds", "cpu")
    assert cell == "raw_tp (`kpod_sched_switch_raw`); oracle FAILED"


def test_page_has_a_column_per_kernel_and_lists_failures(kd: ModuleType, tmp_path: Path) -> None:
    write_run(tmp_path / "bullseye", "5.10.0-32-amd64",
              {"families": [{"family": "kpod_net_tcp_rtt_seconds", "available": False,
                             "reason": "no variant works"}]})
    write_run(tmp_path / "trixie", "6.12.117+deb13-amd64")
    runs = [kd.load_run(tmp_path, s) for s in ("bullseye", "trixie")]
    page = kd.render(runs, {"kpod_net_tcp_rtt_seconds": "net"})
    assert "| family | collector | 5.10.0-32-amd64 | 6.12.117+deb13-amd64 |" in page
    assert ("| `kpod_net_tcp_rtt_seconds` | net | **cannot see**: no variant works; oracle passed "
            "| not probed; oracle passed |") in page
    assert "- failed: `tests/kernel/test_cpu_runqueue.py::test_wait[legacy]` — assert 1 < 0.2" in page


def test_a_run_that_died_before_its_results_says_so(kd: ModuleType, tmp_path: Path) -> None:
    write_run(tmp_path / "trixie", "6.12.117+deb13-amd64")
    (tmp_path / "trixie" / "junit.xml").unlink()  # the guest died mid-run
    (tmp_path / "trixie" / "exit-code.txt").write_text("255\n")
    page = kd.render([kd.load_run(tmp_path, "trixie")], {})
    row = next(line for line in page.splitlines() if line.startswith("| 6.12.117"))
    assert "no results: the run ended with exit 255" in row
    assert "| 0 | 0 | 0 |" not in row

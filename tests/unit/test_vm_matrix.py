"""scripts/vm/matrix.sh with stand-ins for the VM (run.sh) and the report: suites run
side by side with VM_PARALLEL, one after the other without; a failing or silent VM
fails the matrix; each suite's figures land in its own directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# run.sh SUITE --out DIR -- CMD...: records when it ran and what threading it was given,
# leaves a junit.xml with the suite's outcome, exits with it. bullseye fails, trixie
# reports nothing (a guest that died).
FAKE_RUN = r"""#!/usr/bin/env bash
suite=$1; out=$3
echo "$suite start $(date +%s.%N) ${VM_TCG_THREAD:-unset}" >>"$LOG"
echo "booting $suite"
for ((i = 0; i < 1200000; i++)); do :; done  # >1 s of CPU however busy the machine
echo "$suite end $(date +%s.%N)" >>"$LOG"
case "$suite" in
  bullseye) echo '<testsuite failures="1" errors="0"/>' >"$out/junit.xml"; exit 1 ;;
  trixie) exit 255 ;;
  *) echo '<testsuite failures="0" errors="0"/>' >"$out/junit.xml"; exit 0 ;;
esac
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    vm = tmp_path / "scripts" / "vm"
    vm.mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "vm" / "matrix.sh", vm)
    (vm / "run.sh").write_text(FAKE_RUN)
    (vm / "ensure-deps.sh").write_text("exit 0\n")
    (vm / "fetch-kernel.sh").write_text('echo "fetched $1" >>"$LOG"\n')
    (vm / "kernels_doc.py").write_text("import sys; print('summary', *sys.argv[1:])\n")
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    os.symlink(sys.executable, tmp_path / "venv" / "bin" / "python")
    return tmp_path


def run(tree: Path, *suites: str, parallel: int = 1) -> tuple[subprocess.CompletedProcess[str],
                                                               dict[str, list[str]]]:
    log = tree / "runs.log"
    env = {**os.environ, "VM_MATRIX_OUT": str(tree / "out"), "VENV": "venv", "LOG": str(log),
           "VM_PARALLEL": str(parallel)}
    env.pop("VM_TCG_THREAD", None)
    r = subprocess.run(["bash", str(tree / "scripts" / "vm" / "matrix.sh"), *suites], env=env,
                       capture_output=True, text=True, timeout=60)
    events: dict[str, list[str]] = {}
    for line in log.read_text().splitlines():
        what, suite, *rest = line.split()
        if what != "fetched":
            suite, what = what, suite
        events.setdefault(suite, []).append(" ".join([what, *rest]))
    return r, events


def _span(ev: list[str]) -> tuple[float, float]:
    start = next(float(e.split()[1]) for e in ev if e.startswith("start"))
    end = next(float(e.split()[1]) for e in ev if e.startswith("end"))
    return start, end


def test_parallel_suites_overlap_on_single_threaded_tcg(tree: Path) -> None:
    r, ev = run(tree, "bookworm", "bullseye", parallel=2)
    (a0, a1), (b0, b1) = _span(ev["bookworm"]), _span(ev["bullseye"])
    assert a0 < b1 and b0 < a1, "the two VMs did not run at the same time"
    assert all(e.endswith("single") for s in ev.values() for e in s if e.startswith("start"))
    # the kernels were fetched before the VMs started, one after the other
    assert ev["bookworm"][0] == "fetched" and ev["bullseye"][0] == "fetched"
    assert "[bookworm] booting bookworm" in r.stdout and "[bullseye] booting bullseye" in r.stdout
    assert r.returncode == 1 and "FAILED on bullseye(exit 1)" in r.stderr
    for s, code in (("bookworm", "0"), ("bullseye", "1")):
        d = tree / "out" / s
        assert (d / "exit-code.txt").read_text().strip() == code
        assert int((d / "vm-seconds.txt").read_text()) >= 1
        assert int((d / "cpu-seconds.txt").read_text()) >= 1  # its own VM's CPU, counted


def test_sequential_by_default_and_a_silent_vm_fails(tree: Path) -> None:
    r, ev = run(tree, "bookworm", "trixie")
    a1, b0 = _span(ev["bookworm"])[1], _span(ev["trixie"])[0]
    assert a1 <= b0, "without VM_PARALLEL the VMs run one after the other"
    assert int((tree / "out" / "bookworm" / "cpu-seconds.txt").read_text()) >= 1
    assert all(e.endswith("unset") for s in ev.values() for e in s if e.startswith("start"))
    assert r.returncode == 1 and "FAILED on trixie(exit 255)" in r.stderr


def test_all_green_exits_zero_and_summarises(tree: Path) -> None:
    r, _ = run(tree, "bookworm", parallel=3)
    assert r.returncode == 0, r.stderr
    assert "summary --results" in r.stdout and "bookworm" in r.stdout


def test_bad_parallel_is_refused(tree: Path) -> None:
    env = {**os.environ, "VM_PARALLEL": "two", "VM_MATRIX_OUT": str(tree / "out")}
    r = subprocess.run(["bash", str(tree / "scripts" / "vm" / "matrix.sh")], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "VM_PARALLEL must be a positive number" in r.stderr

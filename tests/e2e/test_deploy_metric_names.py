"""deploy/metric-names.txt (the names the alert rules and dashboards may query) against a
real scrape of the agent running the comprehensive profile: every listed family must be
exported, so no rule or panel queries a name the agent never produces.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import slow_factor

REPO = Path(__file__).resolve().parents[2]
NAMES_FILE = REPO / "deploy" / "metric-names.txt"
SCRAPE_DEADLINE_S = 30.0

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(importlib.util.find_spec("kpodmetrics.service") is None,
                       reason="kpodmetrics.service (the agent's start-up module) does not "
                              "exist yet; this test needs the whole agent"),
]


def listed_names() -> set[str]:
    """Listed names outside the "only when <condition>" groups (OTLP, Kubernetes mode,
    something down): those this standalone run must export."""
    out: set[str] = set()
    conditional = False
    for ln in NAMES_FILE.read_text().splitlines():
        ln = ln.strip()
        if ln.startswith("# "):
            conditional = ln.startswith("# only when ")
        elif ln and not ln.startswith("#") and not conditional:
            out.add(ln)
    return out


def dark_families(text: str) -> set[str]:
    """Families whose kernel signal has no source here (kpod_signal_info available=false):
    absent on purpose, not zero."""
    return set(re.findall(r'^kpod_signal_info\{[^}]*family="(\w+)"[^}]*available="false"',
                          text, re.M))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def exported_families(text: str) -> set[str]:
    """Family names from # TYPE lines plus sample names (histogram suffixes folded)."""
    names: set[str] = set()
    histograms: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names.add(name)
            if kind.strip() == "histogram":
                histograms.add(name)
        elif line and not line.startswith("#"):
            m = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line)
            if m:
                names.add(m.group(0))
    for name in list(names):
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[: -len(suffix)] in histograms:
                names.add(name[: -len(suffix)])
    return names


def declared_families() -> set[str]:
    """Best effort, for the failure message: families the agent's code declares."""
    try:
        import kpodmetrics.collectors as pkg
        from kpodmetrics import families

        for mod in pkgutil.walk_packages(pkg.__path__, "kpodmetrics.collectors."):
            importlib.import_module(mod.name)
        return set(families.all_families())
    except Exception:
        return set()


def test_listed_names_are_exported_by_the_comprehensive_profile(tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "agent.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kpodmetrics", "run", "--mode", "standalone",
         "--profile", "comprehensive", "--address", "127.0.0.1", "--port", str(port),
         # the opt-in BPF run-time stats too: their families are in the list
         "--poll-interval", "1s", "--bpf-stats", "true"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if not k.startswith("KPOD_")})
    want = listed_names()
    missing = want
    last_error = "no scrape attempted"
    scrapes = 0
    try:
        deadline = time.monotonic() + SCRAPE_DEADLINE_S * slow_factor()
        while time.monotonic() < deadline and missing:
            if proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
                    missing = want - exported_families(text) - dark_families(text)
                    scrapes += 1
            except OSError as exc:
                last_error = repr(exc)
            time.sleep(1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    agent_log = (tmp_path / "agent.log").read_text()[-4000:]
    assert proc.returncode is not None
    declared = declared_families()
    assert scrapes, f"no successful scrape of /metrics: {last_error}\n{agent_log}"
    assert not missing, (
        f"{len(missing)} names in deploy/metric-names.txt are not in the scrape.\n"
        "declared by the code but without data in this run (no event, collector down, "
        "or the family is only rendered once it has a sample):\n  "
        + "\n  ".join(sorted(missing & declared))
        + "\nnot declared anywhere in the agent:\n  "
        + "\n  ".join(sorted(missing - declared))
        + f"\n--- agent log (tail) ---\n{agent_log}")

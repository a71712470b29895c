"""Alert rules: promtool accepts them, their unit tests pass, and the generated
PrometheusRule / dashboard copies match their sources (deploy/render.py --check).

Needs promtool (Debian package `prometheus`). Missing: skip locally, fail when CI=true.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "rules" / "kpod-metrics.rules.yml"
RULE_TESTS = sorted((REPO / "deploy" / "rules" / "tests").glob("*.yml"))
PROMETHEUS_RULE = (REPO / "deploy" / "kustomize" / "components" / "prometheusrule"
                   / "prometheusrule.yaml")

REQUIRED_ALERTS = {
    "KpodRunqueueLatencyHigh",   # run-queue saturation
    "KpodTCPRetransmitSpike",    # retransmit spikes
    "KpodOOMKillsRepeated",      # OOM kills trending
    "KpodMajorPageFaultStorm",   # major-fault storms
    "KpodSyscallErrorRateHigh",  # syscall error rates
    "KpodBPFMapNearCapacity",    # map near capacity
    "KpodBPFMapUpdateErrors",    # map update errors
    "KpodCollectorDown",         # collector down
    "KpodAgentDown",             # agent down
}


def promtool() -> str:
    path = shutil.which("promtool") or ("/usr/bin/promtool"
                                        if os.access("/usr/bin/promtool", os.X_OK) else None)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is required in CI (Debian package prometheus)")
        pytest.skip("promtool not installed")
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=False, cwd=REPO)


def alerts_in(groups: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for g in groups:
        for r in g["rules"]:  # type: ignore[attr-defined]
            if "alert" in r:
                out[r["alert"]] = r
    return out


def test_promtool_check_rules() -> None:
    res = run(promtool(), "check", "rules", str(RULES))
    assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_unit_tests_pass() -> None:
    assert RULE_TESTS, "no promtool rule tests found"
    res = run(promtool(), "test", "rules", *map(str, RULE_TESTS))
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_alert_is_unit_tested_and_required_ones_exist() -> None:
    alerts = alerts_in(yaml.safe_load(RULES.read_text())["groups"])
    assert alerts.keys() >= REQUIRED_ALERTS, REQUIRED_ALERTS - alerts.keys()
    tested: set[str] = set()
    firing: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for t in case.get("alert_rule_test", []):
                tested.add(t["alertname"])
                if t.get("exp_alerts"):
                    firing.add(t["alertname"])
    assert alerts.keys() <= firing, f"alerts never shown to fire: {alerts.keys() - firing}"
    for name, rule in alerts.items():
        labels = rule.get("labels")
        assert isinstance(labels, dict)
        assert labels.get("severity") in ("info", "warning", "critical"), name
        annotations = rule.get("annotations")
        assert isinstance(annotations, dict)
        assert {"summary", "description"} <= annotations.keys(), name


def test_prometheusrule_carries_the_same_groups() -> None:
    plain = yaml.safe_load(RULES.read_text())["groups"]
    cr = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert cr["kind"] == "PrometheusRule"
    assert cr["spec"]["groups"] == plain


def test_generated_files_are_up_to_date() -> None:
    res = run(sys.executable, "deploy/render.py", "--check")
    assert res.returncode == 0, res.stderr

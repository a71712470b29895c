"""Every PromQL expression in the alert rules and dashboards parses and queries only
metric names the agent exports (deploy/metric-names.txt), so no panel or alert silently
queries nothing. Dashboard expressions are parsed by promtool (wrapped as recording
rules, with Grafana variables substituted).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
NAMES_FILE = DEPLOY / "metric-names.txt"
RULES = DEPLOY / "rules" / "kpod-metrics.rules.yml"
DASHBOARDS = sorted((DEPLOY / "dashboards").glob("*.json"))
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Series Prometheus itself produces for a target (not exported by the agent).
PROMETHEUS_NAMES = {"up"}
NOT_ON_A_PANEL = frozenset({
    "kpod_agent_up", "kpod_bpf_map_entries_written_total", "kpod_bpf_map_evictions_total",
    "kpod_bpf_program_stats_enabled", "kpod_cgroup_read_errors_total",
    "kpod_collector_status_info", "kpod_collector_timeouts_total", "kpod_config_info",
    "kpod_cpu_periods_total", "kpod_cpu_system_seconds_total",
    "kpod_cpu_throttled_periods_total", "kpod_cpu_usage_seconds_total",
    "kpod_cpu_user_seconds_total", "kpod_fs_inodes", "kpod_fs_inodes_free",
    "kpod_fs_stuck_mounts", "kpod_ignored_samples_total", "kpod_last_cycle_age_seconds",
    "kpod_mem_anon_bytes", "kpod_mem_cgroup_major_page_faults_total",
    "kpod_mem_events_total", "kpod_mem_file_bytes", "kpod_mem_peak_bytes",
    "kpod_mem_swap_bytes", "kpod_otlp_export_duration_seconds",
    "kpod_otlp_export_failures_total", "kpod_otlp_export_retries_total",
    "kpod_otlp_exports_skipped_total", "kpod_otlp_exports_total",
    "kpod_pod_watch_errors_total", "kpod_pod_watch_malformed_total",
    "kpod_pod_watch_relists_total", "kpod_series_limit", "kpod_unresolved_samples_total",
})
"""Exported families no rule or panel queries (yet). deploy/metric-names.txt is generated
from the registry and lists every family; these are the ones the former hand-kept list
left out. A new family must be queried somewhere or be added here on purpose."""


_NAME = re.compile(r"(?<![\w:$])([a-zA-Z_:][a-zA-Z0-9_:]*)")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACES = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_VAR = re.compile(r"\$\{?(\w+)\}?")
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "topk", "bottomk", "stddev", "stdvar", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "rate", "irate", "increase", "delta", "idelta",
    "deriv", "histogram_quantile", "absent", "absent_over_time", "vector", "scalar",
    "label_replace", "label_join", "clamp_min", "clamp_max", "abs", "time",
    "max_over_time", "min_over_time", "avg_over_time", "sum_over_time", "le", "inf", "nan",
}


def exported_names() -> set[str]:
    names = set()
    for line in NAMES_FILE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            assert re.fullmatch(r"kpod_[a-z0-9_]+", line), f"bad name in {NAMES_FILE}: {line}"
            names.add(line)
    return names


def base_name(name: str, exported: set[str]) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in exported:
            return name[: -len(suffix)]
    return name


def metric_names(expr: str) -> set[str]:
    """Metric names used in a PromQL expression (selectors, not functions or labels)."""
    text = _STRING.sub('""', expr)
    text = _BRACES.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in _NAME.finditer(text):
        word = m.group(1)
        rest = text[m.end():].lstrip()
        if word.lower() in PROMQL_WORDS or rest.startswith("("):
            continue
        if re.fullmatch(r"\d.*", word):
            continue
        names.add(word)
    return names


def rule_exprs() -> Iterator[tuple[str, str]]:
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            yield f"rule {rule.get('alert') or rule.get('record')}", rule["expr"]


def recorded_names() -> set[str]:
    return {r["record"] for g in yaml.safe_load(RULES.read_text())["groups"]
            for r in g["rules"] if "record" in r}


def _walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in panels:
        yield p
        yield from _walk_panels(p.get("panels", []))


def dashboard_exprs() -> Iterator[tuple[str, str]]:
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        for panel in _walk_panels(dash["panels"]):
            for t in panel.get("targets", []):
                yield f"{path.name}: panel {panel['title']!r}", t["expr"]
        for var in dash["templating"]["list"]:
            if var["type"] == "query":
                q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
                m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", q.strip())
                assert m, f"{path.name}: variable {var['name']} query {q!r} not understood"
                yield f"{path.name}: variable {var['name']}", m.group(1)


def grafana_to_promql(expr: str) -> str:
    expr = expr.replace("$__rate_interval", "5m").replace("$__range", "1h")
    expr = expr.replace("$__interval", "1m")
    return _VAR.sub(".*", expr)


def all_exprs() -> list[tuple[str, str]]:
    return [*rule_exprs(), *dashboard_exprs()]


def test_extractor_finds_names() -> None:
    got = metric_names(
        'histogram_quantile(0.99, sum by (pod, le) (rate(kpod_a_seconds_bucket{pod=~"x", '
        'le="+Inf"}[5m]))) / on (pod) group_left kpod_b_total > 3 * up{job="kpod"} '
        "and absent(kpod:rec:p99)")
    assert got == {"kpod_a_seconds_bucket", "kpod_b_total", "up", "kpod:rec:p99"}


def test_every_queried_metric_is_exported() -> None:
    exported = exported_names()
    recorded = recorded_names()
    unknown: list[str] = []
    used: set[str] = set()
    exprs = all_exprs()
    assert len(exprs) > 40
    for where, expr in exprs:
        for name in metric_names(grafana_to_promql(expr)):
            base = base_name(name, exported)
            used.add(base)
            if base in exported or name in recorded or name in PROMETHEUS_NAMES:
                continue
            unknown.append(f"{where}: {name}")
    assert not unknown, "queries use names the agent does not export:\n" + "\n".join(unknown)
    # every panel-worthy family is shown somewhere (build_info is shown as a table)
    assert exported - used == NOT_ON_A_PANEL, (
        f"exported but never queried: {exported - used - NOT_ON_A_PANEL}; "
        f"queried now, drop from NOT_ON_A_PANEL: {NOT_ON_A_PANEL & used}")


def test_histograms_are_queried_through_their_buckets() -> None:
    """histogram_quantile needs *_bucket series with `le`; a bare name queries nothing."""
    for where, expr in all_exprs():
        for m in re.finditer(r"histogram_quantile\(", expr):
            assert "_bucket" in expr[m.end():], f"{where}: histogram_quantile without _bucket"


def test_dashboards_have_pod_variables() -> None:
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        names = {v["name"] for v in dash["templating"]["list"]}
        assert "datasource" in names and "node" in names, path.name
        if path.name == "kpod-metrics-pod.json":
            assert {"namespace", "pod"} <= names
        ids = [p["id"] for p in _walk_panels(dash["panels"])]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for p in _walk_panels(dash["panels"]):
            for t in p.get("targets", []):
                assert t["datasource"]["uid"] == "${datasource}"


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    tool = shutil.which("promtool")
    if tool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is required in CI (Debian package prometheus)")
        pytest.skip("promtool not installed")
    rules = [{"record": f"dashboard:expr:{i}", "expr": grafana_to_promql(expr)}
             for i, (_, expr) in enumerate(dashboard_exprs())]
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    res = subprocess.run([tool, "check", "rules", str(path)], capture_output=True, text=True,
                         check=False)
    assert res.returncode == 0, res.stdout + res.stderr

#!/usr/bin/env python3
"""Render the generated deployment files from their single sources.

Sources (edit these):
  deploy/rules/kpod-metrics.rules.yml   alert and recording rules (plain Prometheus file)
  DASHBOARDS below                      the Grafana dashboards, as Python data

Generated (do not edit by hand):
  deploy/dashboards/*.json                                         Grafana dashboard JSON
  deploy/kustomize/components/grafana-dashboards/dashboards/*.json copies for the ConfigMap
  deploy/kustomize/components/prometheusrule/prometheusrule.yaml   PrometheusRule CR

    python deploy/render.py           write the files
    python deploy/render.py --check   exit 1 if any generated file is stale (used by tests)

Dashboards are written here rather than exported from a Grafana instance so that every
query is reviewed text, every panel uses only the agent's metric names, and the JSON is
reproducible.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent
RULES_FILE = DEPLOY / "rules" / "kpod-metrics.rules.yml"
DASHBOARD_DIR = DEPLOY / "dashboards"
COMPONENTS = DEPLOY / "kustomize" / "components"
DASHBOARD_COPY_DIR = COMPONENTS / "grafana-dashboards" / "dashboards"
PROMETHEUS_RULE = COMPONENTS / "prometheusrule" / "prometheusrule.yaml"

Json = dict[str, Any]

DS = {"type": "prometheus", "uid": "${datasource}"}
POD_SEL = 'namespace=~"$namespace", pod=~"$pod", node=~"$node"'
RATE = "$__rate_interval"


# -- small builders -------------------------------------------------------------------


def target(expr: str, legend: str = "", ref: str = "A", **extra: Any) -> Json:
    t: Json = {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto", "refId": ref}
    t.update(extra)
    return t


def targets(*pairs: tuple[str, str]) -> list[Json]:
    return [target(e, legend, chr(ord("A") + i)) for i, (e, legend) in enumerate(pairs)]


def timeseries(title: str, desc: str, unit: str, tgts: list[Json], *, stack: bool = False,
               bars: bool = False) -> Json:
    custom: Json = {"drawStyle": "bars" if bars else "line", "fillOpacity": 60 if bars else 10,
                    "lineWidth": 1, "showPoints": "never", "spanNulls": False}
    if stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    return {
        "type": "timeseries", "title": title, "description": desc, "datasource": DS,
        "targets": tgts,
        "fieldConfig": {"defaults": {"unit": unit, "min": 0, "custom": custom}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom",
                               "calcs": ["mean", "max", "lastNotNull"]},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }


def heatmap(title: str, desc: str, expr: str, unit: str) -> Json:
    return {
        "type": "heatmap", "title": title, "description": desc, "datasource": DS,
        "targets": [target(expr, "{{le}}", format="heatmap")],
        "options": {
            "calculate": False,
            "cellGap": 1,
            "color": {"mode": "scheme", "scheme": "Oranges", "exponent": 0.5, "steps": 64},
            "yAxis": {"axisPlacement": "left", "unit": unit},
            "rowsFrame": {"layout": "le"},
            "tooltip": {"mode": "single", "yHistogram": True},
            "legend": {"show": True},
            "filterValues": {"le": 1e-9},
        },
        "fieldConfig": {"defaults": {}, "overrides": []},
    }


def stat(title: str, desc: str, expr: str, unit: str = "none",
         thresholds: list[tuple[float | None, str]] | None = None) -> Json:
    steps = [{"color": c, "value": v} for v, c in (thresholds or [(None, "green")])]
    return {
        "type": "stat", "title": title, "description": desc, "datasource": DS,
        "targets": [target(expr)],
        "fieldConfig": {"defaults": {"unit": unit,
                                     "thresholds": {"mode": "absolute", "steps": steps}},
                        "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "background", "graphMode": "none", "textMode": "auto"},
    }


def state_timeline(title: str, desc: str, expr: str, legend: str) -> Json:
    return {
        "type": "state-timeline", "title": title, "description": desc, "datasource": DS,
        "targets": [target(expr, legend)],
        "fieldConfig": {"defaults": {
            "mappings": [{"type": "value", "options": {
                "0": {"text": "down", "color": "red", "index": 0},
                "1": {"text": "up", "color": "green", "index": 1}}}],
            "thresholds": {"mode": "absolute", "steps": [{"color": "red", "value": None},
                                                         {"color": "green", "value": 1}]},
            "color": {"mode": "thresholds"}}, "overrides": []},
        "options": {"showValue": "never", "mergeValues": True, "rowHeight": 0.8,
                    "legend": {"showLegend": False}},
    }


def bargauge(title: str, desc: str, expr: str, legend: str, unit: str) -> Json:
    return {
        "type": "bargauge", "title": title, "description": desc, "datasource": DS,
        "targets": [target(expr, legend, instant=True)],
        "fieldConfig": {"defaults": {
            "unit": unit, "min": 0, "max": 1,
            "thresholds": {"mode": "absolute", "steps": [
                {"color": "green", "value": None}, {"color": "orange", "value": 0.75},
                {"color": "red", "value": 0.9}]}}, "overrides": []},
        "options": {"displayMode": "gradient", "orientation": "horizontal",
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "showUnfilled": True},
    }


def table(title: str, desc: str, expr: str) -> Json:
    return {
        "type": "table", "title": title, "description": desc, "datasource": DS,
        "targets": [target(expr, format="table", instant=True)],
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {"showHeader": True},
        "transformations": [{"id": "organize", "options": {
            "excludeByName": {"Time": True, "Value": True, "__name__": True}}}],
    }


def row(title: str) -> Json:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def quantiles(metric: str, sel: str, by: str) -> list[tuple[str, str]]:
    """p50/p90/p99 of a log2-bucket histogram, one series per `by` group."""
    legend = "{{" + by.split(",")[-1].strip() + "}}"
    return [
        (f"histogram_quantile({q}, sum by ({by}, le) "
         f"(rate({metric}_bucket{{{sel}}}[{RATE}])))", f"p{int(q * 100)} {legend}")
        for q in (0.5, 0.9, 0.99)
    ]


def layout(items: list[Json]) -> list[Json]:
    """Place panels on the 24-column grid: rows full width, panels 8 wide (3 per line)."""
    out: list[Json] = []
    x = y = 0
    line_h = 0
    for pid, item in enumerate(items, start=1):
        item = dict(item, id=pid)
        if item["type"] == "row":
            if x:
                y += line_h
            item["gridPos"] = {"h": 1, "w": 24, "x": 0, "y": y}
            y += 1
            x = line_h = 0
        else:
            w = int(item.pop("_w", 8))
            h = int(item.pop("_h", 8))
            if x + w > 24:
                y += line_h
                x = line_h = 0
            item["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
            x += w
            line_h = max(line_h, h)
        out.append(item)
    return out


def wide(panel: Json, w: int = 12, h: int = 8) -> Json:
    return dict(panel, _w=w, _h=h)


def query_var(name: str, label: str, query: str, *, multi: bool = True) -> Json:
    return {
        "type": "query", "name": name, "label": label, "datasource": DS,
        "query": {"query": query, "refId": f"{name}-var"},
        "definition": query, "refresh": 2, "sort": 1,
        "multi": multi, "includeAll": True, "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
    }


def datasource_var() -> Json:
    return {"type": "datasource", "name": "datasource", "label": "Prometheus",
            "query": "prometheus", "current": {}, "hide": 0, "refresh": 1}


def dashboard(uid: str, title: str, desc: str, variables: list[Json], items: list[Json]) -> Json:
    return {
        "uid": uid, "title": title, "description": desc,
        "tags": ["kpod-metrics", "ebpf", "kubernetes"],
        "editable": True, "graphTooltip": 1, "refresh": "30s", "schemaVersion": 39,
        "time": {"from": "now-3h", "to": "now"}, "timezone": "",
        "templating": {"list": variables},
        "annotations": {"list": []},
        "links": [],
        "panels": layout(items),
    }


# -- dashboard 1: a pod, "why is it slow?" ----------------------------------------------


def pod_dashboard() -> Json:
    s = POD_SEL
    by_pod = "namespace, pod"
    pod_legend = "{{namespace}}/{{pod}}"

    def per_pod(metric: str) -> str:
        return f"sum by ({by_pod}) (rate({metric}{{{s}}}[{RATE}]))"

    items: list[Json] = [
        row("CPU: waiting for a CPU"),
        wide(heatmap(
            "Run-queue latency (heatmap)",
            "How long runnable threads of the selected pods waited for a CPU, per log2 "
            "bucket (kernel sched_wakeup -> sched_switch). Mass at the top means CPU "
            "starvation.",
            f"sum by (le) (increase(kpod_cpu_runqueue_latency_seconds_bucket{{{s}}}[{RATE}]))",
            "s")),
        wide(timeseries(
            "Run-queue latency quantiles",
            "p50/p90/p99 run-queue wait per pod (interpolated within log2 buckets).", "s",
            targets(*quantiles("kpod_cpu_runqueue_latency_seconds", s, by_pod)))),
        timeseries("Context switches", "Voluntary (blocked, e.g. on I/O or locks) vs "
                   "involuntary (preempted: CPU contention) switches per second.", "ops",
                   targets((f"sum by (pod, kind) (rate(kpod_cpu_context_switches_total{{{s}}}"
                            f"[{RATE}]))", "{{pod}} {{kind}}"))),
        timeseries("CPU throttling", "Seconds per second the pods' cgroups were throttled "
                   "by their CPU limit (cpu.stat throttled_usec).", "s",
                   targets((per_pod("kpod_cpu_throttled_seconds_total"), pod_legend))),
        timeseries("CPU starvation: waiting vs throttled", "Seconds per second the pods' "
                   "threads waited for a CPU (run queue) plus the time their cgroup was "
                   "throttled by its CPU limit: throttled threads are off the run queue, so "
                   "the run-queue figure alone misses them (kpod-metrics why adds both).", "s",
                   targets((per_pod("kpod_cpu_runqueue_latency_seconds_sum"),
                            "waiting " + pod_legend),
                           (per_pod("kpod_cpu_throttled_seconds_total"),
                            "throttled " + pod_legend)), stack=True),
        timeseries("Who held the CPU", "Seconds per second the pods' threads waited for "
                   "a CPU, by the pod whose task they replaced on it (the holder; __idle__: "
                   "an idle CPU, wake-up latency; __host__: node processes outside pods; "
                   "__other__: holders beyond the agent's top k per cycle).", "s",
                   targets((f"sum by (pod, holder_namespace, holder_pod) (rate("
                            f"kpod_cpu_runqueue_wait_by_holder_seconds_total{{{s}}}[{RATE}]))",
                            "{{pod}} behind {{holder_namespace}}/{{holder_pod}}")),
                   stack=True),
        timeseries("CPU pressure", "PSI: share of time some (waiting) or all (stalled) "
                   "tasks of the cgroup were delayed for lack of CPU.", "percentunit",
                   targets((per_pod("kpod_pressure_cpu_waiting_seconds_total"),
                            "some " + pod_legend),
                           (per_pod("kpod_pressure_cpu_stalled_seconds_total"),
                            "full " + pod_legend))),
        row("Network: TCP"),
        timeseries("TCP retransmits", "Segments retransmitted per second (loss or "
                   "congestion on the path), by cause (rto: timeout; fast: fast "
                   "retransmit; tlp: tail-loss probe; syn: SYN/SYN-ACK).", "ops",
                   targets((f"sum by ({by_pod}, cause) (rate(kpod_net_tcp_retransmits_total"
                            f"{{{s}}}[{RATE}]))", "{{pod}} {{cause}}"))),
        timeseries("TCP round-trip time", "Smoothed RTT samples of the pods' sockets.", "s",
                   targets(*quantiles("kpod_net_tcp_rtt_seconds", s, by_pod)[1:])),
        timeseries("TCP throughput", "Bytes sent and received per second.", "Bps",
                   targets((per_pod("kpod_net_tcp_sent_bytes_total"), "sent " + pod_legend),
                           (per_pod("kpod_net_tcp_received_bytes_total"),
                            "received " + pod_legend))),
        timeseries("TCP connections", "Connections opened (by direction), failed and "
                   "closed per second.", "ops",
                   targets((f"sum by (pod, direction) (rate("
                            f"kpod_net_tcp_connections_opened_total{{{s}}}[{RATE}]))",
                            "opened {{direction}} {{pod}}"),
                           (f"sum by (pod) (rate(kpod_net_tcp_connections_failed_total"
                            f"{{{s}}}[{RATE}]))", "failed {{pod}}"),
                           (f"sum by (pod) (rate(kpod_net_tcp_connections_closed_total"
                            f"{{{s}}}[{RATE}]))", "closed {{pod}}"))),
        timeseries("Active TCP connections", "Established connections right now.", "short",
                   targets((f"sum by ({by_pod}) (kpod_net_tcp_connections_active{{{s}}})",
                            pod_legend))),
        row("Memory"),
        timeseries("OOM kills", "Processes killed by the kernel OOM killer (the victim's "
                   "container), per interval.", "short",
                   targets((f"sum by (namespace, pod, container) (increase("
                            f"kpod_mem_oom_kills_total{{{s}}}[{RATE}]))",
                            "{{pod}}/{{container}}")), bars=True),
        timeseries("Major page faults", "Faults that had to read from disk, per second: "
                   "a working set larger than memory.", "ops",
                   targets((per_pod("kpod_mem_major_page_faults_total"), pod_legend))),
        timeseries("Memory usage", "cgroup memory.current.", "bytes",
                   targets((f"sum by ({by_pod}) (kpod_mem_usage_bytes{{{s}}})", pod_legend))),
        timeseries("Memory pressure", "PSI: share of time tasks waited for memory "
                   "(reclaim, refaults, swap).", "percentunit",
                   targets((per_pod("kpod_pressure_memory_waiting_seconds_total"),
                            "some " + pod_legend),
                           (per_pod("kpod_pressure_memory_stalled_seconds_total"),
                            "full " + pod_legend))),
        row("Syscalls (comprehensive profile)"),
        timeseries("Top syscalls", "The ten most frequent syscalls of the selected pods.",
                   "ops",
                   targets((f"topk(10, sum by (syscall) (rate(kpod_syscall_count_total{{{s}}}"
                            f"[{RATE}])))", "{{syscall}}"))),
        timeseries("Syscall error ratio", "Share of calls returning an error, per syscall.",
                   "percentunit",
                   targets((f"sum by (syscall) (rate(kpod_syscall_errors_total{{{s}}}[{RATE}]))"
                            f" / sum by (syscall) (rate(kpod_syscall_count_total{{{s}}}"
                            f"[{RATE}])) > 0", "{{syscall}}"))),
        timeseries("Syscall latency p99", "p99 time spent in each syscall (top ten).", "s",
                   targets((f"topk(10, histogram_quantile(0.99, sum by (syscall, le) (rate("
                            f"kpod_syscall_latency_seconds_bucket{{{s}}}[{RATE}]))))",
                            "{{syscall}}"))),
        row("Disk and filesystems"),
        timeseries("Disk throughput", "Bytes read and written per second by device "
                   "(cgroup io.stat).", "Bps",
                   targets((f"sum by (pod, device) (rate(kpod_disk_read_bytes_total{{{s}}}"
                            f"[{RATE}]))", "read {{pod}} {{device}}"),
                           (f"sum by (pod, device) (rate(kpod_disk_written_bytes_total{{{s}}}"
                            f"[{RATE}]))", "written {{pod}} {{device}}"))),
        timeseries("Disk operations", "Read and write operations per second.", "iops",
                   targets((f"sum by (pod) (rate(kpod_disk_reads_total{{{s}}}[{RATE}]))",
                            "reads {{pod}}"),
                           (f"sum by (pod) (rate(kpod_disk_writes_total{{{s}}}[{RATE}]))",
                            "writes {{pod}}"))),
        timeseries("I/O pressure", "PSI: share of time tasks waited for I/O.", "percentunit",
                   targets((per_pod("kpod_pressure_io_waiting_seconds_total"),
                            "some " + pod_legend),
                           (per_pod("kpod_pressure_io_stalled_seconds_total"),
                            "full " + pod_legend))),
        timeseries("Block I/O latency p99", "p99 time from a request's issue to the disk "
                   "to its completion, per device and operation, charged to the cgroup the "
                   "block layer charges (the bio's blkcg, not the kworker that issues it).",
                   "s",
                   targets((f"histogram_quantile(0.99, sum by (pod, device, op, le) (rate("
                            f"kpod_disk_io_latency_seconds_bucket{{{s}}}[{RATE}])))",
                            "{{pod}} {{device}} {{op}}"))),
        timeseries("Block I/O time", "Seconds per second the pods' block requests were "
                   "in flight at the disk (sum of latencies; concurrent requests add up).",
                   "s",
                   targets((f"sum by (pod, device) (rate(kpod_disk_io_latency_seconds_sum"
                            f"{{{s}}}[{RATE}]))", "{{pod}} {{device}}"))),
        wide(timeseries("Filesystem usage", "Used share of each mounted volume.",
                        "percentunit",
                        targets((f"max by (pod, mountpoint) (kpod_fs_usage_bytes{{{s}}} / "
                                 f"kpod_fs_capacity_bytes{{{s}}})", "{{pod}} {{mountpoint}}")))),
        wide(timeseries("Filesystem space available", "Bytes available to unprivileged "
                        "writers on each volume.", "bytes",
                        targets((f"min by (pod, mountpoint) (kpod_fs_available_bytes{{{s}}})",
                                 "{{pod}} {{mountpoint}}")))),
        row("Network interfaces"),
        timeseries("Interface throughput", "Bytes received and transmitted per second on "
                   "the pods' interfaces.", "Bps",
                   targets((f"sum by (pod, interface) (rate(kpod_net_iface_rx_bytes_total"
                            f"{{{s}}}[{RATE}]))", "rx {{pod}} {{interface}}"),
                           (f"sum by (pod, interface) (rate(kpod_net_iface_tx_bytes_total"
                            f"{{{s}}}[{RATE}]))", "tx {{pod}} {{interface}}"))),
        timeseries("Interface packets", "Packets per second.", "pps",
                   targets((f"sum by (pod) (rate(kpod_net_iface_rx_packets_total{{{s}}}"
                            f"[{RATE}]))", "rx {{pod}}"),
                           (f"sum by (pod) (rate(kpod_net_iface_tx_packets_total{{{s}}}"
                            f"[{RATE}]))", "tx {{pod}}"))),
        timeseries("Interface errors and drops", "Errors and drops per second (any non-zero "
                   "value deserves a look).", "pps",
                   targets((f"sum by (pod) (rate(kpod_net_iface_rx_errors_total{{{s}}}"
                            f"[{RATE}]))", "rx errors {{pod}}"),
                           (f"sum by (pod) (rate(kpod_net_iface_tx_errors_total{{{s}}}"
                            f"[{RATE}]))", "tx errors {{pod}}"),
                           (f"sum by (pod) (rate(kpod_net_iface_rx_drops_total{{{s}}}"
                            f"[{RATE}]))", "rx drops {{pod}}"),
                           (f"sum by (pod) (rate(kpod_net_iface_tx_drops_total{{{s}}}"
                            f"[{RATE}]))", "tx drops {{pod}}"))),
    ]
    anchor = "kpod_cpu_runqueue_latency_seconds_count"
    variables = [
        datasource_var(),
        query_var("node", "Node", f"label_values({anchor}, node)"),
        query_var("namespace", "Namespace", f'label_values({anchor}{{node=~"$node"}}, namespace)'),
        query_var("pod", "Pod",
                  f'label_values({anchor}{{node=~"$node", namespace=~"$namespace"}}, pod)'),
    ]
    return dashboard(
        "kpod-pod-why-slow", "kpod-metrics / Pod: why is it slow?",
        "Kernel view of the selected pods: CPU waits, TCP, memory, syscalls, disk and "
        "network, from the kpod-metrics eBPF agent.", variables, items)


# -- dashboard 2: the agent itself ------------------------------------------------------


def agent_dashboard() -> Json:
    s = 'node=~"$node"'
    items: list[Json] = [
        row("Overview"),
        stat("Agents up", "Scrape targets of job kpod-metrics answering.",
             'count(up{job="kpod-metrics"} == 1)'),
        stat("Agents down", "Scrape targets of job kpod-metrics not answering.",
             'count(up{job="kpod-metrics"} == 0) or vector(0)', "none",
             [(None, "green"), (1, "red")]),
        stat("Collectors down", "Collectors reporting kpod_collector_up = 0.",
             f"count(kpod_collector_up{{{s}}} == 0) or vector(0)", "none",
             [(None, "green"), (1, "orange")]),
        wide(table("Versions", "kpod_build_info per agent.", f"kpod_build_info{{{s}}}"), 24, 6),
        row("Kernel signals"),
        wide(stat("Collectors degraded", "Collectors running with some families that no "
                  "program variant can feed on this node's kernel: those families are "
                  "absent there, not zero (kpod_collector_state).",
                  f'count(kpod_collector_state{{{s}, state="degraded"}} == 1) or vector(0)',
                  "none", [(None, "green"), (1, "orange")]), 6, 8),
        wide(table("Families that cannot be seen here", "kpod_signal_info with available="
                   "\"false\": no program variant of the signal loads and attaches on this "
                   "kernel; reason says why each variant failed (kpod-metrics probe shows the "
                   "same on the node).",
                   f'kpod_signal_info{{{s}, available="false"}}'), 18, 8),
        row("Collection"),
        wide(timeseries("Collection cycle duration", "p50/p99 time of one full collection "
                        "cycle per node; it must stay well under the poll interval.", "s",
                        targets(*quantiles("kpod_collection_cycle_duration_seconds", s,
                                           "node")))),
        wide(timeseries("Collector duration", "Time each collector took in its last run "
                        "(slowest node).", "s",
                        targets((f"max by (collector) (kpod_collector_duration_seconds{{{s}}})",
                                 "{{collector}}")))),
        wide(state_timeline("Collector state", "1 = producing data, 0 = down (see the "
                            "agent log for the reason).",
                            f"kpod_collector_up{{{s}}}", "{{node}} {{collector}}"), 12, 10),
        wide(timeseries("Collector errors", "Errors per second by collector (skipped "
                        "inputs, failed reads).", "ops",
                        targets((f"sum by (collector) (rate(kpod_collector_errors_total{{{s}}}"
                                 f"[{RATE}]))", "{{collector}}"))), 12, 10),
        row("BPF cost"),
        timeseries("BPF CPU time", "CPU seconds per second spent in each BPF program, "
                   "summed over the selected nodes (1 = one full CPU). Needs the host's "
                   "kernel.bpf_stats_enabled=1; see docs/deploy.md.", "percentunit",
                   targets((f"sum by (program) (rate(kpod_bpf_program_run_seconds_total"
                            f"{{{s}}}[{RATE}]))", "{{program}}"))),
        timeseries("BPF program runs", "Invocations per second by program.", "ops",
                   targets((f"sum by (program) (rate(kpod_bpf_program_runs_total{{{s}}}"
                            f"[{RATE}]))", "{{program}}"))),
        timeseries("BPF time per run", "Average cost of one invocation.", "s",
                   targets((f"sum by (program) (rate(kpod_bpf_program_run_seconds_total"
                            f"{{{s}}}[{RATE}])) / sum by (program) (rate("
                            f"kpod_bpf_program_runs_total{{{s}}}[{RATE}]))", "{{program}}"))),
        row("BPF maps"),
        wide(bargauge("Map fill", "Entries / capacity, fullest node per map. Above 90 % "
                      "the LRU maps start evicting data between reads.",
                      f"max by (map) (kpod_bpf_map_entries{{{s}}} / "
                      f"kpod_bpf_map_capacity{{{s}}})", "{{map}}", "percentunit")),
        wide(timeseries("Map update errors", "Failed writes from the BPF side per second "
                        "(events not counted), and scratch entries of dead threads the "
                        "agent deleted (calls that never returned).", "ops",
                        targets((f"sum by (map) (rate(kpod_bpf_map_update_errors_total{{{s}}}"
                                 f"[{RATE}]))", "{{map}}"),
                                (f"sum by (map) (rate(kpod_bpf_map_reaped_entries_total{{{s}}}"
                                 f"[{RATE}]))", "reaped {{map}}")))),
        row("Series"),
        wide(timeseries("Exported series by family", "Series the agents export, by metric "
                        "family (what Prometheus ingests).", "short",
                        targets((f"sum by (family) (kpod_series{{{s}}})", "{{family}}")),
                        stack=True)),
        wide(timeseries("Series dropped", "Series refused by the cardinality budget "
                        "(KPOD_MAX_SERIES) per interval.", "short",
                        targets((f"sum by (node) (increase(kpod_series_dropped_total{{{s}}}"
                                 f"[{RATE}]))", "{{node}}")), bars=True)),
    ]
    variables = [datasource_var(), query_var("node", "Node", "label_values(kpod_build_info, node)")]
    return dashboard(
        "kpod-agent-health", "kpod-metrics / Agent health",
        "Is the kpod-metrics agent healthy, and what does it cost: collection time, "
        "collector state, BPF program cost, map fill and exported series.", variables, items)


DASHBOARDS = {"kpod-metrics-pod.json": pod_dashboard, "kpod-metrics-agent.json": agent_dashboard}


# -- rendering ----------------------------------------------------------------------------


def render_dashboard(build: Callable[[], Json]) -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"


def render_prometheus_rule() -> str:
    rules = yaml.safe_load(RULES_FILE.read_text())
    obj = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "kpod-metrics", "namespace": "kpod-metrics",
                     "labels": {"app.kubernetes.io/name": "kpod-metrics",
                                "app.kubernetes.io/component": "alerting"}},
        "spec": {"groups": rules["groups"]},
    }
    header = ("# GENERATED by deploy/render.py from deploy/rules/kpod-metrics.rules.yml: "
              "edit that file, then run `python deploy/render.py`.\n")
    return header + str(yaml.safe_dump(obj, sort_keys=False, width=1000, allow_unicode=True))


def outputs() -> Iterator[tuple[Path, str]]:
    for name, build in DASHBOARDS.items():
        text = render_dashboard(build)
        yield DASHBOARD_DIR / name, text
        yield DASHBOARD_COPY_DIR / name, text
    yield PROMETHEUS_RULE, render_prometheus_rule()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is stale")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(str(path.relative_to(DEPLOY.parent)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(DEPLOY.parent)}")
    if stale:
        print("stale generated files (run `python deploy/render.py`):\n  " + "\n  ".join(stale),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

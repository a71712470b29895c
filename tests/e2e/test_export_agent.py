"""The export path of a real agent process on this kernel, checked by independent tools:
promtool on a real scrape, a real Prometheus server computing histogram_quantile over a
busy test cgroup, and an OTLP receiver that must see the same series and numbers."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest

from tests.conftest import require, require_root
from tests.e2e.agent_util import AgentProc, free_port, run_agent
from tests.kernel.cgroup_util import KernelCgroup, build_helper, make_cgroups, spawn_in
from tests.otlp_receiver import OtlpReceiver, flatten, parse_exposition

pytestmark = pytest.mark.e2e
INVERSE = {"k8s.node.name": "node", "k8s.namespace.name": "namespace",
           "k8s.pod.name": "pod", "k8s.container.name": "container"}


@pytest.fixture(scope="module")
def busy() -> Iterator[KernelCgroup]:
    require_root()
    exe = build_helper("workload")
    with make_cgroups("busy") as (cg,):
        procs = [spawn_in(cg, [exe, "spin", "600000"], stdin=subprocess.PIPE,
                          stdout=subprocess.DEVNULL) for _ in range(2 * (os.cpu_count() or 1) + 1)]
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(b"g")
            p.stdin.flush()
        yield cg
        for p in procs:
            p.kill()
            p.wait()


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    rx = OtlpReceiver().start()
    yield rx
    rx.stop()


@pytest.fixture(scope="module")
def agent(busy: KernelCgroup, receiver: OtlpReceiver) -> Iterator[AgentProc]:
    # BPF stats are opt-in (they time every BPF program on the node): on here, so the
    # kpod_bpf_program_* families are checked; the default is checked in test_agent_skeleton
    with run_agent("--mode", "standalone", "--poll-interval", "1s", "--bpf-stats", "true",
                   env={"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": receiver.url}) as a:
        time.sleep(2.5)
        yield a


def test_promtool_accepts_a_real_scrape(agent: AgentProc, busy: KernelCgroup) -> None:
    require(shutil.which("promtool") is not None, "promtool (Debian package prometheus)")
    status, body = agent.get("/metrics")
    assert status == 200 and f'cgroup="{busy.rel}"'.encode() in body
    res = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True,
                         timeout=60)
    assert res.returncode == 0 and not res.stdout.strip() and not res.stderr.strip(), \
        (res.stdout + res.stderr).decode()


def test_otlp_push_carries_the_same_numbers_as_metrics(agent: AgentProc,
                                                       receiver: OtlpReceiver) -> None:
    """Find the push of the same cycle as a scrape (same cycle count): equal everywhere."""
    key = "kpod_collection_cycle_duration_seconds_count"
    for _ in range(20):
        prom = parse_exposition(agent.get("/metrics")[1])
        # computed per scrape, so never pushed (docs/reliability.md)
        prom = {k: v for k, v in prom.items() if k[0] != "kpod_last_cycle_age_seconds"}
        cycles = next(v for (n, _), v in prom.items() if n == key)
        for rx in reversed(receiver.wait_for(1)):
            pushed = flatten(rx.request, INVERSE)
            if next((v for (n, _), v in pushed.items() if n == key), None) == cycles:
                assert pushed == prom
                res = {a.key: a.value.string_value
                       for a in rx.request.resource_metrics[0].resource.attributes}
                assert res["service.name"] == "kpod-metrics" and res["k8s.node.name"]
                return
        time.sleep(0.3)
    pytest.fail("no OTLP push matched a scrape of the same cycle")


def agent_seconds(agent: AgentProc) -> float:
    """Wall time since the agent process started (/proc/<pid>/stat's starttime)."""
    with open(f"/proc/{agent.proc.pid}/stat") as fh:
        start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as fh:
        uptime = float(fh.read().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def test_self_metrics_of_a_real_agent(agent: AgentProc) -> None:
    s = {(n, tuple(sorted(lab.items()))): v for n, lab, v in agent.samples()}
    names = {n for n, _ in s}
    for want in ("kpod_collection_cycle_duration_seconds_count", "kpod_collector_up",
                 "kpod_collector_duration_seconds", "kpod_collector_errors_total",
                 "kpod_bpf_program_run_seconds_total", "kpod_bpf_program_runs_total",
                 "kpod_bpf_map_entries", "kpod_bpf_map_capacity", "kpod_series",
                 "kpod_series_dropped_total", "kpod_build_info", "kpod_config_info",
                 "kpod_otlp_exports_total", "kpod_otlp_export_failures_total"):
        assert want in names, want
    # the sched_switch program of whichever variant this kernel runs (kpod_sched_switch,
    # kpod_sched_switch_3arg, ...)
    (switch,) = [dict(k)["program"] for n, k in s if n == "kpod_bpf_program_runs_total"
                 and dict(k)["program"].startswith("kpod_sched_switch")]
    runs = {dict(k)["program"]: v for (n, k), v in s.items() if n == "kpod_bpf_program_runs_total"}
    assert runs[switch] > 100  # the spinners are switched all the time
    secs = {dict(k)["program"]: v for (n, k), v in s.items()
            if n == "kpod_bpf_program_run_seconds_total"}
    # real CPU time, and a small part of what the node had while the agent ran (not an
    # absolute figure: under QEMU TCG the same program took 1.35 s of a 6.1 VM's run)
    assert 0 < secs[switch] < 0.10 * agent_seconds(agent) * (os.cpu_count() or 1)
    with open("/proc/sys/kernel/bpf_stats_enabled") as fh:  # we never flip the sysctl
        assert fh.read().strip() == "0"
    series = {dict(k)["family"]: v for (n, k), v in s.items() if n == "kpod_series"}
    assert series["kpod_cpu_runqueue_latency_seconds"] >= 1
    assert agent.get("/readyz")[0] == 200
    page = agent.get("/")[1].decode()
    assert "cpu" in page and 'href="/metrics"' in page


def _prom_query(port: int, q: str) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
    with urllib.request.urlopen(url, timeout=5) as r:
        doc = json.load(r)
    assert doc["status"] == "success", doc
    return list(doc["data"]["result"])


def test_real_prometheus_computes_a_plausible_p99(agent: AgentProc, busy: KernelCgroup) -> None:
    exe = shutil.which("prometheus")
    require(exe is not None, "prometheus server (Debian package prometheus)")
    assert exe is not None
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="kpod-prom-") as tmp:
        cfg = os.path.join(tmp, "prometheus.yml")
        with open(cfg, "w") as fh:
            fh.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                     "scrape_configs:\n  - job_name: kpod\n    static_configs:\n"
                     f"      - targets: ['127.0.0.1:{agent.port}']\n")
        prom = subprocess.Popen(
            [exe, f"--config.file={cfg}", f"--storage.tsdb.path={tmp}/data",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            q = ("histogram_quantile(0.99, rate(kpod_cpu_runqueue_latency_seconds_bucket"
                 f'{{cgroup="{busy.rel}"}}[5s]))')
            value = math.nan
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                time.sleep(1)
                try:
                    res = _prom_query(port, q)
                except OSError:
                    continue
                if res:
                    value = float(res[0]["value"][1])  # type: ignore[index]
                    if math.isfinite(value):
                        break
            up = _prom_query(port, 'up{job="kpod"}')
            assert up and up[0]["value"][1] == "1"  # type: ignore[index]
        finally:
            prom.terminate()
            prom.wait(timeout=20)
    # 2n+1 spinners on n CPUs wait for their turn: p99 between 1 us and the top bound 1.07 s
    assert math.isfinite(value), "histogram_quantile returned no finite value"
    assert 1e-6 < value <= 1.08, value

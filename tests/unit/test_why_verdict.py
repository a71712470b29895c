"""`why` from two hand-written /metrics pages: figures are the differences the pages
imply (worked out by hand below), the ranking is by time cost, absent families say so."""

from __future__ import annotations

import argparse
import io
import socket

import pytest

from kpodmetrics.why.command import explain, run, target_of
from kpodmetrics.why.owners import Owner, parse_cgroup, parse_pod
from kpodmetrics.why.scrape import parse

HEAD = """# HELP kpod_cpu_runqueue_latency_seconds run queue
# TYPE kpod_cpu_runqueue_latency_seconds histogram
# HELP kpod_cpu_throttled_seconds_total throttled
# TYPE kpod_cpu_throttled_seconds_total counter
# HELP kpod_cpu_periods_total periods
# TYPE kpod_cpu_periods_total counter
# HELP kpod_cpu_throttled_periods_total throttled periods
# TYPE kpod_cpu_throttled_periods_total counter
# HELP kpod_cpu_runqueue_wait_by_holder_seconds_total holders
# TYPE kpod_cpu_runqueue_wait_by_holder_seconds_total counter
# HELP kpod_pressure_io_waiting_seconds_total io some
# TYPE kpod_pressure_io_waiting_seconds_total counter
# HELP kpod_net_tcp_retransmits_total retransmits
# TYPE kpod_net_tcp_retransmits_total counter
# HELP kpod_mem_oom_kills_total oom
# TYPE kpod_mem_oom_kills_total counter
"""

POD = 'namespace="shop",pod="web-1",container="app",node="n1"'
OTHER = 'namespace="shop",pod="db-0",container="pg",node="n1"'


def page(runq: float, runq_n: int, thr: float, holders: dict[str, float], io_wait: float,
         retrans: dict[str, int], oom: int, other_runq: float = 0.0) -> str:
    lines = [HEAD]
    lines.append(f'kpod_cpu_runqueue_latency_seconds_bucket{{{POD},le="+Inf"}} {runq_n}')
    lines.append(f"kpod_cpu_runqueue_latency_seconds_sum{{{POD}}} {runq}")
    lines.append(f"kpod_cpu_runqueue_latency_seconds_count{{{POD}}} {runq_n}")
    lines.append(f"kpod_cpu_runqueue_latency_seconds_sum{{{OTHER}}} {other_runq}")
    lines.append(f"kpod_cpu_runqueue_latency_seconds_count{{{OTHER}}} 1")
    lines.append(f"kpod_cpu_throttled_seconds_total{{{POD}}} {thr}")
    lines.append(f"kpod_cpu_periods_total{{{POD}}} 100")
    lines.append(f"kpod_cpu_throttled_periods_total{{{POD}}} 7")
    for holder, v in holders.items():
        ns, _, hp = holder.rpartition("/")
        lines.append(f'kpod_cpu_runqueue_wait_by_holder_seconds_total{{{POD},holder_namespace="{ns}",'
                     f'holder_pod="{hp}",holder_container="c"}} {v}')
    lines.append(f"kpod_pressure_io_waiting_seconds_total{{{POD}}} {io_wait}")
    for cause, n in retrans.items():
        lines.append(f'kpod_net_tcp_retransmits_total{{{POD},cause="{cause}"}} {n}')
    lines.append(f"kpod_mem_oom_kills_total{{{POD}}} {oom}")
    return "\n".join(lines) + "\n"


def verdict(target: Owner, a: str, b: str, seconds: float = 10.0) -> tuple[int, list[str], str]:
    out, err = io.StringIO(), io.StringIO()
    rc = explain(target, parse(a, at=0.0), parse(b, at=seconds), "http://agent", out, err)
    return rc, out.getvalue().splitlines(), err.getvalue()


def test_cpu_starvation_adds_wait_and_throttling_and_names_the_holder_first() -> None:
    a = page(10.0, 100, 1.0, {"shop/batch": 3.0, "__idle__/__idle__": 1.0}, 0.5, {"rto": 1}, 0,
             other_runq=5.0)
    # over the window: wait 14.0-10.0 = 4.0 s, throttled 1.5-1.0 = 0.5 s;
    # holders: batch 6.6-3.0 = 3.6, idle 1.4-1.0 = 0.4 -> 90 % / 10 %
    b = page(14.0, 300, 1.5, {"shop/batch": 6.6, "__idle__/__idle__": 1.4}, 0.75,
             {"rto": 3, "fast": 4}, 0, other_runq=50.0)
    rc, lines, err = verdict(parse_pod("shop/web-1"), a, b)
    assert rc == 0, err
    assert lines[0].startswith("why shop/web-1: 10.0 s")
    first = lines[1]
    assert first.startswith("  1. CPU starvation: 4.50 s = waiting for a CPU 4.00 s + "
                            "throttled by quota 500.0 ms (0.45 s per second)")
    assert "waited 200 times, mean 20.0 ms" in first
    assert "behind: shop/batch 90%, __idle__ 10%" in first
    assert "throttled in 0 of 0 quota periods" not in first  # periods did not move
    second = lines[2]
    assert second.startswith("  2. I/O stalls: 250.0 ms (io pressure, some)")
    assert any("TCP: 6 retransmits (fast 4, rto 2)" in line for line in lines)
    assert any("OOM kills: none" in line for line in lines)
    # not declared by this agent: said so, never shown as zero
    assert any("time in syscalls: not available from this agent (kpod_syscall_latency_seconds"
               in line for line in lines)
    assert any("memory stalls: not available from this agent" in line for line in lines)
    assert "db-0" not in "\n".join(lines), "another pod's series never leak into the verdict"


def test_oom_kills_come_first_and_a_reset_counts_from_zero() -> None:
    a = page(10.0, 100, 0.0, {}, 9.0, {}, 5)
    b = page(12.0, 110, 0.0, {}, 1.0, {}, 1)  # io counter dropped: the agent restarted
    rc, lines, _ = verdict(parse_pod("shop/web-1"), a, b)
    assert rc == 0
    assert lines[1].startswith("  1. OOM kills: 1 processes killed")
    # io pressure after the reset counts from zero: 1.0 s, below CPU's 12.0-10.0 = 2.0 s
    assert lines[2].startswith("  2. CPU starvation: 2.00 s")
    assert lines[3].startswith("  3. I/O stalls: 1.00 s")


def test_unknown_pod_and_wrong_mode_are_clear_errors() -> None:
    a = page(1.0, 1, 0.0, {}, 0.0, {}, 0)
    rc, lines, err = verdict(parse_pod("shop/nope"), a, a)
    assert rc == 1 and not lines
    assert "pod shop/nope is unknown to the agent at http://agent" in err
    assert "shop/db-0" in err and "shop/web-1" in err
    rc, _, err = verdict(parse_cgroup("/kubepods/x"), a, a)
    assert rc == 1
    assert "it labels series by pod: use NAMESPACE/POD" in err


def test_cgroup_target_sums_its_subtree() -> None:
    def cg_page(victim: float, child: float, sibling: float) -> str:
        return (HEAD + f'kpod_cpu_runqueue_latency_seconds_sum{{cgroup="/a/victim"}} {victim}\n'
                f'kpod_cpu_runqueue_latency_seconds_count{{cgroup="/a/victim"}} 1\n'
                f'kpod_cpu_runqueue_latency_seconds_sum{{cgroup="/a/victim/t"}} {child}\n'
                f'kpod_cpu_runqueue_latency_seconds_sum{{cgroup="/a/victimless"}} {sibling}\n')
    rc, lines, _ = verdict(parse_cgroup("/sys/fs/cgroup/a/victim/"), cg_page(1, 1, 1),
                           cg_page(2, 3, 100))
    assert rc == 0
    assert lines[1].startswith("  1. CPU starvation: 3.00 s = waiting for a CPU 3.00 s")


def test_target_parsing() -> None:
    assert parse_pod("ns/p") == Owner(namespace="ns", pod="p")
    for bad in ("p", "ns/", "/p", "a/b/c"):
        with pytest.raises(ValueError, match="<namespace>/<pod>"):
            parse_pod(bad)
    assert parse_cgroup("/sys/fs/cgroup/unified/k/x") == Owner(cgroup="/k/x")
    assert parse_cgroup("k/x/") == Owner(cgroup="/k/x")
    with pytest.raises(ValueError, match="exactly one"):
        target_of(argparse.Namespace(pod="a/b", cgroup="/x"))


def test_unreachable_agent_is_a_clear_error() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = io.StringIO()
    args = argparse.Namespace(pod="a/b", cgroup=None, url=f"http://127.0.0.1:{port}", window=0.01)
    assert run(args, io.StringIO(), err) == 1
    assert f"cannot reach the agent at http://127.0.0.1:{port}/metrics" in err.getvalue()


def test_the_window_is_the_time_between_the_collections_the_pages_show() -> None:
    """Counters move at the agent's cycles: divided by read-to-read time, a late cycle
    would inflate the rate (a wait of 9 s read 9.3 s apart, its cycles 12.8 s apart)."""
    a = page(10.0, 100, 1.0, {}, 0.5, {}, 0) + "kpod_last_cycle_age_seconds 0.5\n"
    b = page(19.0, 160, 1.0, {}, 0.5, {}, 0) + "kpod_last_cycle_age_seconds 2.0\n"
    first, second = parse(a, at=100.0), parse(b, at=109.3)
    assert first.collected_at == 99.5 and second.collected_at == 107.3
    out, err = io.StringIO(), io.StringIO()
    assert explain(parse_pod("shop/web-1"), first, second, "http://agent", out, err) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("why shop/web-1: 7.8 s between the agent's collections"), lines[0]
    assert "(1.15 s per second)" in lines[1], lines[1]
    # without the gauge (an older agent): the time between the reads
    assert parse(page(10.0, 100, 1.0, {}, 0.5, {}, 0), at=3.0).collected_at is None

"""Benchmark harness: the parsers it relies on (agent self-metrics, tool outputs,
fdinfo, py-spy stacks) — wrong parsing would silently give wrong figures."""

from __future__ import annotations

import pytest
from benchmarks import bpfinfo, floor, promtext, scale, workloads

METRICS = """\
# HELP kpod_collection_cycle_duration_seconds Wall time
# TYPE kpod_collection_cycle_duration_seconds histogram
kpod_collection_cycle_duration_seconds_bucket{le="0.001",node="vm"} 0.0
kpod_collection_cycle_duration_seconds_count{node="vm"} 7.0
kpod_collection_cycle_duration_seconds_sum{node="vm"} 0.35
kpod_collector_up{collector="cpu",node="vm"} 1.0
kpod_collector_up{collector="net",node="vm"} 0.0
kpod_collector_status_info{collector="net",node="vm",program="",reason="a \\"quoted\\" why"} 1.0
kpod_bpf_map_capacity{map="cpu_stats",node="vm"} 4096.0
"""


def test_scrape_values_and_labels() -> None:
    s = promtext.Scrape(METRICS)
    assert s.value("kpod_collection_cycle_duration_seconds_count") == 7.0
    assert s.value("kpod_collection_cycle_duration_seconds_sum") == pytest.approx(0.35)
    assert s.by_label("kpod_collector_up", "collector") == {"cpu": 1.0, "net": 0.0}
    assert set(s.by_label("kpod_bpf_map_capacity", "map")) == {"cpu_stats"}
    assert s.value("kpod_collector_up", collector="net") == 0.0
    assert s.series == 7


def test_scrape_keeps_escaped_quotes_in_one_label() -> None:
    labels = dict(next(lab for n, lab, _ in promtext.parse(METRICS)
                       if n == "kpod_collector_status_info"))
    assert labels["reason"] == 'a \\"quoted\\" why'
    assert labels["program"] == ""


def test_perf_pipe_output_gives_ns_per_op() -> None:
    out = """# Running 'sched/pipe' benchmark:
# Executed 200000 pipe operations between two processes

     Total time: 4.374 [sec]

      21.870900 usecs/op
          45722 ops/sec
"""
    assert workloads.parse_perf_pipe(out) == pytest.approx(21870.9)
    with pytest.raises(workloads.WorkloadError):
        workloads.parse_perf_pipe("perf: command not found")


def test_helper_output() -> None:
    assert workloads.parse_helper("ns_per_op 212.695\n") == pytest.approx(212.695)
    with pytest.raises(workloads.WorkloadError):
        workloads.parse_helper("")


def test_fdinfo_of_prog_and_map_fds() -> None:
    prog = "pos:\t0\nflags:\t02000002\nprog_type:\t26\nprog_id:\t345\nrun_time_ns:\t0\n"
    mp = "map_type:\t9\nkey_size:\t8\nmax_entries:\t4096\nmemlock:\t1475456\nmap_id:\t226\n"
    assert bpfinfo.parse_fdinfo(prog)["prog_id"] == "345"
    assert bpfinfo.parse_fdinfo(mp)["memlock"] == "1475456"


def test_hot_spots_separate_idle_from_busy() -> None:
    stacks = "\n".join([
        "<module> (a.py:1);run (svc.py:9);collect (cpu.py:40) 30",
        "<module> (a.py:1);run (svc.py:9);apply (store.py:80) 10",
        "_bootstrap (threading.py:1);_worker (concurrent/futures/thread.py:81) 60",
        "garbage line",
    ])
    hs = scale.hot_spots(stacks)
    assert hs["samples"] == 100 and hs["idle_samples"] == 60
    top = hs["self"][0]  # type: ignore[index]
    assert top["frame"] == "collect (cpu.py:40)" and top["share_of_busy"] == pytest.approx(0.75)
    incl = {f["frame"]: f["samples"] for f in hs["inclusive"]}  # type: ignore[union-attr]
    assert incl["run (svc.py:9)"] == 40


def test_strace_opens_in_the_window_in_order() -> None:
    text = "\n".join([
        '101 1700000000.100000 openat(AT_FDCWD</>, "/sys/fs/cgroup/a/cpu.stat", '
        'O_RDONLY|O_CLOEXEC) = 7</sys/fs/cgroup/a/cpu.stat>',
        '101 1700000000.200000 openat(AT_FDCWD</>, "/sys/fs/cgroup/a", '
        'O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_DIRECTORY <unfinished ...>',
        '102 1700000000.250000 openat(AT_FDCWD</>, "/proc/1/net/dev", O_RDONLY) = 9</proc/1/net/dev>',
        '101 1700000000.300000 <... openat resumed>) = 8</sys/fs/cgroup/a>',
        '101 1700000000.900000 openat(AT_FDCWD</>, "/late", O_RDONLY) = 5</late>',
        '101 1700000000.150000 read(7</sys/fs/cgroup/a/cpu.stat>, "x", 1) = 1',
    ])
    assert floor.parse_opens(text, 1700000000.1, 1700000000.5) == [
        "/sys/fs/cgroup/a/cpu.stat", "/proc/1/net/dev", "/sys/fs/cgroup/a"]

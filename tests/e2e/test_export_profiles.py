"""Series per busy cgroup for each profile, measured from a real scrape of a real agent
and compared with the table in docs/profiles.md, so docs and code cannot drift.

The busy cgroup runs what a typical service does: CPU-bound threads (run-queue waits,
throttling-free cpu.stat), a loop that scrapes the agent over TCP (network, syscalls)
and writes with O_DIRECT (disk I/O). Standalone mode labels series by cgroup path, so a
"pod" here is one cgroup; Kubernetes mode has the same families per pod.

Where cgroup v2 has the io controller (pure v2 nodes, the kernel VMs) it is enabled for
the busy cgroup, as the kubelet does for pods: without it the block layer charges the
cgroup's I/O to the nearest ancestor that has it (io.stat, and with it the blkcg
`kpod_disk_io_latency_seconds` reads), and the busy cgroup would show no disk series.
Its io.stat families then come on top of the table (docs/profiles.md: "on a pure
cgroup v2 node each pod adds ... diskio") and are counted apart.

The window is counted in the agent's collection cycles after the loop's first dd and
scrape, not in seconds: under QEMU TCG one cycle (and one scrape of the loop) takes seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import require, require_root, slow_factor
from tests.e2e.agent_util import AgentProc, run_agent
from tests.kernel.cgroup_util import (
    KernelCgroup,
    build_helper,
    make_cgroups,
    spawn_in,
    v2_controllers,
)

pytestmark = pytest.mark.e2e
DOC = Path(__file__).resolve().parents[2] / "docs" / "profiles.md"
TOLERANCE = 2
# Series per profile whose presence in a 5 s window is luck, not code: a major fault
# needs a page the cache dropped (all profiles), a disk read latency series one the
# cache missed, and kpod_net_tcp_connections_active is exported only when a curl
# connection is open at the instant its cgroup is read. The docs count them all.
# So is the flush latency series: where a flush reaches the disk as the flush
# machinery's own request (no bio, e.g. the kernel VMs' virtio disk) it is charged to
# nobody (bio_unowned, docs/why.md), only a flush request that carries its bio has an owner.
LUCKY = {"minimal": 1, "standard": 4, "comprehensive": 4}
# Holder series (who the busy cgroup waited behind) are counted apart: how many holders
# a cycle sees is the node's timing; the agent bounds them to the top k + __idle__ +
# __other__ per cycle (export/peers.py), a scrape shows the union over the cycles so
# far, and the busy cgroup always waits behind something.
HOLDER = "kpod_cpu_runqueue_wait_by_holder_seconds_total"
HOLDERS_MAX = 3 * (5 + 2)
# io.stat families of the busy cgroup's own io.stat (pure v2 with the io controller only;
# a hybrid host has no io.stat on v2): one series per disk each, counted apart.
IO_STAT = ("kpod_disk_read_bytes_total", "kpod_disk_written_bytes_total",
           "kpod_disk_reads_total", "kpod_disk_writes_total")
LATENCY = "kpod_disk_io_latency_seconds"
CYCLES = 5  # collection cycles the window spans, counted from the loop's first round
WINDOW_DEADLINE = 120.0  # seconds (x slow_factor in a VM); TCG: a cycle can take several
CYCLE_COUNT = "kpod_collection_cycle_duration_seconds_count"
ROW = re.compile(r"^\|\s*`(minimal|standard|comprehensive)`\s*\|\s*(\d+)\s*\|")


def documented() -> dict[str, int]:
    """Profile -> series per busy cgroup, from the table in docs/profiles.md."""
    rows = {m.group(1): int(m.group(2)) for line in DOC.read_text().splitlines()
            if (m := ROW.match(line))}
    assert set(rows) == {"minimal", "standard", "comprehensive"}, rows
    return rows


def psi_cpu_full() -> bool:
    """cpu.pressure has a `full` line from 5.13 on (before, only `some`)."""
    with open("/proc/pressure/cpu") as fh:
        return any(line.startswith("full ") for line in fh)


def busy_loop(cg: KernelCgroup, port: int, scratch: str) -> list[subprocess.Popen[bytes]]:
    exe = build_helper("workload")
    procs = [spawn_in(cg, [exe, "spin", "600000"], stdin=subprocess.PIPE,
                      stdout=subprocess.DEVNULL) for _ in range(2)]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write(b"g")
        p.stdin.flush()
    # dd first: under TCG a scrape of the agent takes seconds, the writer must not wait;
    # the window opens once both have completed (on 5.10 under TCG a first scrape
    # outlasted the 5 cycles that followed the first dd)
    script = (f"while :; do dd if=/dev/zero of={scratch} bs=64k count=8 oflag=direct "
              f"2>/dev/null; curl -s -o /dev/null http://127.0.0.1:{port}/metrics "
              f"&& touch {scratch}.done; sleep 0.1; done")
    procs.append(spawn_in(cg, ["/bin/sh", "-c", script], stdout=subprocess.DEVNULL))
    return procs


def series_of(agent: AgentProc, rel: str) -> Counter[str]:
    fams: Counter[str] = Counter()
    for name, labels, _ in agent.samples():
        if labels.get("cgroup") != rel or name.endswith(("_bucket", "_sum")):
            continue
        fams[name.removesuffix("_count")] += 1  # a histogram series counts once
    return fams


def latency_ops(agent: AgentProc, rel: str) -> set[str]:
    """`op` labels of the cgroup's kpod_disk_io_latency_seconds series."""
    return {labels.get("op", "") for name, labels, _ in agent.samples()
            if name == f"{LATENCY}_count" and labels.get("cgroup") == rel}


def cycles(agent: AgentProc) -> float:
    return sum(v for name, _, v in agent.samples() if name == CYCLE_COUNT)


def wait_window(agent: AgentProc, done: str) -> None:
    """Until the loop has finished one dd and one scrape and CYCLES collections ran
    after that."""
    deadline = time.monotonic() + WINDOW_DEADLINE * slow_factor()
    while not os.path.exists(done):
        assert time.monotonic() < deadline, "the busy loop's dd and scrape never completed"
        time.sleep(0.1)
    start = cycles(agent)
    while cycles(agent) < start + CYCLES:
        assert time.monotonic() < deadline, \
            f"{cycles(agent) - start:.0f} of {CYCLES} collection cycles in {WINDOW_DEADLINE} s"
        time.sleep(0.2)


def measure(profile: str) -> tuple[Counter[str], set[str]]:
    """(series per family, op labels of its disk latency series) of the busy cgroup."""
    io = ("io",) if "io" in v2_controllers() else ()
    with make_cgroups("busy", controllers=io) as (cg,), \
            run_agent("--mode", "standalone", "--poll-interval", "1s",
                      "--profile", profile) as agent:
        scratch = os.path.join(os.environ.get("TMPDIR", "/var/tmp"), f"kpod-prof-{cg.id}")
        procs = busy_loop(cg, agent.port, scratch)
        try:
            wait_window(agent, f"{scratch}.done")
            return series_of(agent, cg.rel), latency_ops(agent, cg.rel)
        finally:
            for p in procs:
                p.kill()
                p.wait()
            for f in (scratch, f"{scratch}.done"):
                if os.path.exists(f):
                    os.unlink(f)


@pytest.mark.parametrize("profile", ["minimal", "standard", "comprehensive"])
def test_series_per_busy_cgroup_match_the_docs(profile: str) -> None:
    require_root()
    require(shutil.which("curl") is not None and shutil.which("dd") is not None,
            "curl and dd for the busy workload")
    got, ops = measure(profile)
    io_stat = {f: got.pop(f) for f in IO_STAT if f in got}
    if "io" in v2_controllers():  # its own io.stat: the dd's writes are there
        assert io_stat.get("kpod_disk_writes_total", 0) >= 1, f"{profile}: io.stat {io_stat}"
    else:
        assert not io_stat, f"{profile}: io.stat series without an io controller: {io_stat}"
    if profile != "minimal":
        # the O_DIRECT writer's requests, charged to it (the bio's blkcg, or on a hybrid
        # host the submitter): never luck
        assert "write" in ops, f"{profile}: disk latency ops of the busy cgroup: {ops}"
    holders = got.pop(HOLDER, 0)
    assert 1 <= holders <= HOLDERS_MAX, f"{profile}: {holders} holder series"
    total = sum(got.values())
    detail = ", ".join(f"{k}={v}" for k, v in sorted(got.items()))
    # The documented figure has every lucky series; each may be missing, and no more
    # than TOLERANCE may come on top (syscalls the workload happens to make).
    doc = documented()[profile]
    if profile != "minimal" and not psi_cpu_full():
        doc -= 1  # the table counts kpod_pressure_cpu_stalled_seconds_total
        print(f"{profile}: this kernel's PSI has no cpu 'full' line (5.13+): {doc} series")
        assert "kpod_pressure_cpu_stalled_seconds_total" not in got  # cannot see != zero
    assert doc - LUCKY[profile] <= total <= doc + TOLERANCE, \
        f"{profile}: {total} series, docs say {doc} ({detail})"


if __name__ == "__main__":  # print the measured table for docs/profiles.md
    for prof in ("minimal", "standard", "comprehensive"):
        c, _ = measure(prof)
        extra = {f: c.pop(f) for f in IO_STAT if f in c}
        print(f"| `{prof}` | {sum(c.values()) - c[HOLDER]} | + {c[HOLDER]} holders"
              f"{f' + io.stat {extra}' if extra else ''}")
        for k, v in sorted(c.items()):
            print(f"    {k} {v}")

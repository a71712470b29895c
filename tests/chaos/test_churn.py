"""Churn while collecting: cgroup directories created and removed at up to 1,000/s, and
processes that exit while the agent reads their /proc/<pid>/ files. No crash (no
collector raised), no wrong number (a witness cgroup's CPU time and a tmpfs volume's
size match their oracles), no leak (series of removed cgroups go, RSS bounded)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import threading
import time

import pytest

from tests.chaos.chaos_util import Samples, cycles, value
from tests.e2e.agent_util import AgentProc, run_agent
from tests.kernel.cgroup_util import KernelCgroup, make_cgroups, spawn_in

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]
INTERVAL = 0.5
CHURN_INTERVAL = 1.0
RSS_BOUND_KIB = 30 * 1024


def usage_seconds(cg: KernelCgroup) -> float:
    with open(os.path.join(cg.path, "cpu.stat")) as fh:
        return int(fh.readline().split()[1]) / 1e6


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def under(samples: Samples, prefix: str) -> int:
    return sum(1 for _, lab, _ in samples if lab.get("cgroup", "").startswith(prefix + "/"))


def raised(samples: Samples) -> float:
    return sum(v for n, _, v in samples if n == "kpod_collector_errors_total")


def check_witness(agent: AgentProc, witness: KernelCgroup) -> None:
    s = agent.samples()
    oracle = usage_seconds(witness)
    got = value(s, "kpod_cpu_usage_seconds_total", cgroup=witness.rel)
    age = value(s, "kpod_last_cycle_age_seconds") or 0.0
    assert got is not None and 0 <= oracle - got <= age + 1.0, (oracle, got, age)


def test_cgroups_created_and_removed_at_1000_per_second() -> None:
    with make_cgroups("witness", "churn") as (witness, churn):
        spinner = spawn_in(witness, ["sh", "-c", "while :; do :; done"])
        stop = threading.Event()
        made = [0]

        def churner() -> None:
            alive: list[str] = []
            t0 = time.monotonic()
            while not stop.is_set():
                d = os.path.join(churn.path, f"c{made[0]}")
                os.mkdir(d)
                alive.append(d)
                made[0] += 1
                if len(alive) > 100:
                    os.rmdir(alive.pop(0))
                ahead = made[0] / 1000.0 - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
            for d in alive:
                with contextlib.suppress(OSError):
                    os.rmdir(d)

        try:
            with run_agent("--mode", "standalone", "--poll-interval", f"{CHURN_INTERVAL:g}s",
                           "--grace-period", "1s") as agent:
                time.sleep(2 * CHURN_INTERVAL)
                rss0 = rss_kib(agent.proc.pid)
                c0, t0 = cycles(agent.samples()), time.monotonic()
                th = threading.Thread(target=churner, daemon=True)
                th.start()
                peak_under = 0
                for _ in range(8):
                    time.sleep(1.0)
                    s = agent.samples()
                    peak_under = max(peak_under, under(s, churn.rel))
                    check_witness(agent, witness)
                stop.set()
                th.join(10)
                t1 = time.monotonic()
                rate = made[0] / (t1 - t0)
                c1 = cycles(agent.samples())
                time.sleep(1.0 + 4 * CHURN_INTERVAL)  # grace period, then a few cycles
                s = agent.samples()
                rss1 = rss_kib(agent.proc.pid)
                assert agent.proc.poll() is None
                assert raised(s) == 0
                assert under(s, churn.rel) == 0, "series of removed cgroups left behind"
                assert peak_under > 0  # the churned cgroups were seen while they lived
                # the churner takes a CPU of two: cycles slow down, they do not stop
                assert c1 - c0 >= 0.5 * (t1 - t0) / CHURN_INTERVAL
                assert rss1 - rss0 < RSS_BOUND_KIB, (rss0, rss1)
                check_witness(agent, witness)
            assert rate >= 500, f"only {rate:.0f} cgroups/s created"
            print(f"\nFIGURE cgroup-churn: {made[0]} cgroups created+removed in {t1 - t0:.1f}s "
                  f"({rate:.0f}/s), {c1 - c0:.0f} cycles, up to {peak_under} churned series "
                  f"seen, 0 left after grace, RSS {rss0} -> {rss1} KiB")
        finally:
            stop.set()
            spinner.kill()
            spinner.wait()


_EXITERS = r"""
mount -t tmpfs -o size=8m,nr_inodes=1000 kpod-test-tmpfs "$1" || exit 1
echo $$ > "$2"
echo ready
while :; do /bin/true; done
"""


def test_processes_exiting_while_their_proc_files_are_read() -> None:
    mnt = tempfile.mkdtemp(prefix="kpod-test-")
    try:
        with make_cgroups("pod") as (pod,):
            # a pod of processes that live ~1 ms each, in its own mount and network ns
            sh = subprocess.Popen(
                ["unshare", "-m", "-n", "--propagation", "private", "sh", "-c", _EXITERS,
                 "sh", mnt, os.path.join(pod.path, "cgroup.procs")],
                stdout=subprocess.PIPE, text=True)
            try:
                assert sh.stdout is not None and sh.stdout.readline().strip() == "ready"
                with run_agent("--mode", "standalone", "--poll-interval",
                               f"{INTERVAL:g}s") as agent:
                    mp = {"cgroup": pod.rel, "mountpoint": mnt}
                    c0, t0 = cycles(agent.samples()), time.monotonic()
                    seen = scrapes = 0
                    for _ in range(12):
                        time.sleep(INTERVAL)
                        s = agent.samples()
                        scrapes += 1
                        cap = value(s, "kpod_fs_capacity_bytes", **mp)
                        if cap is not None:
                            seen += 1
                            assert cap == 8 << 20 and value(s, "kpod_fs_inodes", **mp) == 1000
                    s = agent.samples()
                    c1, t1 = cycles(s), time.monotonic()
                    skipped = sum(v for n, _, v in s if n == "kpod_cgroup_read_errors_total")
                    assert raised(s) == 0
                    assert c1 - c0 >= 0.7 * (t1 - t0) / INTERVAL
                    assert seen >= scrapes // 2, (seen, scrapes)
            finally:
                sh.kill()
                sh.wait()
        print(f"\nFIGURE proc-exit: volume measured exactly in {seen}/{scrapes} scrapes, "
              f"{c1 - c0:.0f} cycles, {skipped:.0f} inputs skipped-and-counted, 0 raised")
    finally:
        os.rmdir(mnt)

"""`kpod-metrics why` against the real agent: a victim (a spinner pinned to CPU 1)
behind a culprit (two spinners pinned to CPU 1), a bystander spinning on CPU 0.

The victim spins rather than ticks: a 1 ms sleeper's wake-up preemption kept its wait
near 0.03 s/s on 6.18, a figure too small to compare against schedstat under noise.

Oracle for the figure: the victim's own run-queue delay from /proc/<pid>/schedstat,
as a rate over a window bracketing why's (both are steady-state rates, so the
alignment of the agent's cycles with the window does not matter beyond noise).
Where the agent exports the holder family, the culprit must be named first, its share
of the wait within 15 points of schedstat's (the victim spins, so whenever the culprit
runs on CPU 1 the victim waits: the culprit's CPU time over the victim's run_delay), and
the bystander at most 5 %. The share is measured, not assumed: in the 6.1 VM the agent
and the test's own processes (the root cgroup) held 21 % of CPU 1 against the culprit.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from tests.conftest import require, require_root, slow_factor
from tests.e2e.agent_util import run_agent
from tests.kernel.cgroup_util import build_helper, cpu_ns, make_cgroups, spawn_in

pytestmark = pytest.mark.e2e

UNIT = {"s": 1.0, "ms": 1e-3, "µs": 1e-6}
WINDOW = 8.0
# The spinners outlive any run of the test (they are killed at its end): in a loaded VM
# why's own start-up and window took longer than the 60 s they once spun, and the
# victim had stopped waiting before the window opened (schedstat: 0 s of wait).
SPIN_MS = "600000"


def seconds(text: str) -> float:
    value, unit = text.split()
    return float(value) * UNIT[unit]


def run_delay(pid: int) -> int:
    with open(f"/proc/{pid}/schedstat") as fh:
        return int(fh.read().split()[1])


def test_why_names_cpu_starvation_with_the_victims_own_wait() -> None:
    require_root()
    require(len(__import__("os").sched_getaffinity(0)) >= 2, "needs two CPUs")
    exe = build_helper("workload")
    with make_cgroups("victim", "culprit", "bystander") as (victim, culprit, bystander), \
            run_agent("--mode", "standalone", "--profile", "standard",
                      "--poll-interval", "1s") as agent:
        procs = [spawn_in(victim, ["taskset", "-c", "1", exe, "spin", SPIN_MS],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE)]
        # the culprit at nice -10 holds CPU 1 against whatever else a shared machine
        # runs there (test_cpu_holders.py measures the shares against perf)
        procs += [spawn_in(culprit, ["nice", "-n", "-10", "taskset", "-c", "1", exe, "spin",
                                     SPIN_MS],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(2)]
        procs.append(spawn_in(bystander, ["taskset", "-c", "0", exe, "spin", SPIN_MS],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE))
        try:
            for p in procs:
                assert p.stdout is not None and p.stdout.readline() == b"ready\n"
                assert p.stdin is not None
                p.stdin.write(b"g")
                p.stdin.flush()
            time.sleep(2.0)  # the agent has seen a full cycle of the steady state
            why = subprocess.Popen([sys.executable, "-m", "kpodmetrics", "why", "--cgroup",
                                    victim.rel, "--url", f"http://127.0.0.1:{agent.port}",
                                    "--window", f"{WINDOW:g}s"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            # the oracle's window opens when why has read the agent once (it says so):
            # why's own start-up runs on CPU 1 too, in the root cgroup, outside why's
            # window (bracketing it too, the 6.1 VM's oracle said 63 % against why's 77 %)
            assert why.stderr is not None
            said = why.stderr.readline()
            t0, d0 = time.monotonic(), run_delay(procs[0].pid)
            c0 = sum(cpu_ns(p.pid) for p in procs[1:3])
            out, rest = why.communicate(timeout=60 * slow_factor())
            t1, d1 = time.monotonic(), run_delay(procs[0].pid)
            c1 = sum(cpu_ns(p.pid) for p in procs[1:3])
            r = subprocess.CompletedProcess(why.args, why.returncode, out, said + rest)
            unknown = subprocess.run([sys.executable, "-m", "kpodmetrics", "why", "--cgroup",
                                      victim.rel + "-nope", "--url",
                                      f"http://127.0.0.1:{agent.port}", "--window", "1s"],
                                     capture_output=True, text=True, timeout=60 * slow_factor())
        finally:
            for p in procs:
                p.kill()
                p.wait()
    print("\n" + r.stdout + r.stderr)
    assert r.returncode == 0, r.stderr
    assert said.startswith("kpod-metrics why: read http://127.0.0.1:"), said
    lines = r.stdout.splitlines()
    m = re.match(r"why (\S+): ([\d.]+) s between the agent.s collections", lines[0])
    assert m and m[1] == victim.rel, lines[0]
    window = float(m[2])
    first = lines[1]
    m = re.match(r"  1\. CPU starvation: .* = waiting for a CPU ([\d.]+ \S+) \+ throttled by "
                 r"quota ([\d.]+ \S+)", first)
    assert m, f"CPU starvation must come first: {first}"
    ours = seconds(m[1]) / window
    oracle = (d1 - d0) * 1e-9 / (t1 - t0)
    print(f"victim run-queue wait: why {ours:.3f} s/s, schedstat {oracle:.3f} s/s")
    # A precondition on the workload, not on the agent: three spinners share CPU 1 (two
    # of them favoured), so the victim waits most of each second.
    assert oracle > 0.2, "the culprit should make the victim wait"
    assert ours == pytest.approx(oracle, rel=0.25)
    if "behind:" in first:
        shares = dict((name, float(pct) / 100) for name, pct in
                      re.findall(r"(\S+) (\d+)%", first.split("behind:", 1)[1]))
        top = re.search(r"behind: (\S+) ", first)
        assert top and top[1] == culprit.rel, first
        held = min((c1 - c0) / max(d1 - d0, 1), 1.0)
        print(f"culprit's share of the wait: why {shares[culprit.rel]:.0%}, schedstat {held:.0%}")
        assert held > 0.5, "precondition: the culprit holds CPU 1 most of the victim's wait"
        # 15 points: why's figures move once per agent cycle (1 s), so its window and
        # the oracle's differ by up to a cycle at each end, where why's own reads and
        # the agent's render run in the root cgroup (6.1 VM: 77 vs 63 % bracketing
        # why's start-up too, 73 vs 65 % without it; host 100 vs 99 %)
        assert shares[culprit.rel] == pytest.approx(held, abs=0.15), first
        assert shares.get(bystander.rel, 0.0) <= 0.05, first
    else:
        assert "kpod_cpu_runqueue_wait_by_holder_seconds_total" in r.stdout, \
            "an agent without the holder family must say so"
    assert unknown.returncode == 1
    assert f"cgroup {victim.rel}-nope is unknown to the agent" in unknown.stderr

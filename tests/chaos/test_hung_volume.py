"""A pod volume that never answers, with the real agent (issue 15's check).

hangfs (tests/chaos/hangfs.c) is mounted in a private mount namespace of a process in
a test cgroup, like a stale NFS volume of a pod. Once its statfs hangs for the agent:
cycles keep completing at the interval, another busy cgroup's CPU usage keeps
advancing in step with its cpu.stat, the stuck mount is reported and logged, its
series go away (never a stale or zero value), and SIGTERM ends the agent within 10 s
with the call still stuck; the agent's BPF programs are gone with it.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.bpf_owned import Tracker, still_loaded
from tests.chaos.chaos_util import Samples, cycles, hung_volume, stop_and_log, value
from tests.e2e.agent_util import AgentProc, run_agent
from tests.kernel.cgroup_util import KernelCgroup, make_cgroups, spawn_in

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]
INTERVAL = 1.0
BLOCK = 4096
WANT = {"kpod_fs_capacity_bytes": 1000 * BLOCK, "kpod_fs_usage_bytes": 600 * BLOCK,
        "kpod_fs_available_bytes": 300 * BLOCK, "kpod_fs_inodes": 100,
        "kpod_fs_inodes_free": 50}


def usage_seconds(cg: KernelCgroup) -> float:
    with open(os.path.join(cg.path, "cpu.stat")) as fh:
        return int(fh.readline().split()[1]) / 1e6  # usage_usec comes first


def wait_for(agent: AgentProc, pred: object, timeout: float = 10.0) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        s = agent.samples()
        if pred(s):  # type: ignore[operator]
            return s
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.2)


def test_hung_statfs_holds_nothing_but_itself() -> None:
    with make_cgroups("vol", "busy") as (vol, busy), hung_volume(vol, "statfs") as hv:
        spinner = spawn_in(busy, ["sh", "-c", "while :; do :; done"])
        try:
            with run_agent("--mode", "standalone", "--poll-interval", f"{INTERVAL:g}s") as agent:
                tracker = Tracker(agent.proc.pid)
                mp = {"cgroup": vol.rel, "mountpoint": hv.mountpoint}
                # answered: the volume is measured with hangfs's own figures
                s = wait_for(agent, lambda s: value(s, "kpod_fs_inodes", **mp) is not None)
                assert {f: value(s, f, **mp) for f in WANT} == WANT
                assert value(s, "kpod_fs_stuck_mounts", cgroup=vol.rel) == 0

                hv.hang_for(agent.proc.pid)
                s = wait_for(agent, lambda s: value(s, "kpod_fs_stuck_mounts",
                                                    cgroup=vol.rel) == 1)
                c0, t0 = cycles(s), time.monotonic()
                u0 = value(s, "kpod_cpu_usage_seconds_total", cgroup=busy.rel)
                ready = []
                for _ in range(6):
                    time.sleep(1.0)
                    ready.append(agent.get("/readyz")[0])
                s = agent.samples()
                oracle = usage_seconds(busy)
                c1, t1 = cycles(s), time.monotonic()
                u1 = value(s, "kpod_cpu_usage_seconds_total", cgroup=busy.rel)
                age = value(s, "kpod_last_cycle_age_seconds")
                # cycles at the interval (70 % of them at least: a shared 2-CPU machine)
                assert c1 - c0 >= 0.7 * (t1 - t0) / INTERVAL, (c0, c1, t1 - t0)
                assert ready == [200] * 6
                assert age is not None and age < 3 * INTERVAL
                # the busy cgroup's CPU time advances and agrees with its cpu.stat: the
                # export lags the oracle by at most what it burnt since the last cycle
                assert u0 is not None and u1 is not None and u1 - u0 > 0.3
                assert 0 <= oracle - u1 <= (age + 1.0) * 1.0 + 0.1, (oracle, u1, age)
                # the stuck volume: counted, its series gone
                assert value(s, "kpod_fs_stuck_mounts", cgroup=vol.rel) == 1
                assert value(s, "kpod_fs_capacity_bytes", **mp) is None
                fs_timeouts = value(s, "kpod_collector_timeouts_total", collector="fs")
                fs_seconds = value(s, "kpod_collector_duration_seconds", collector="fs")

                hv.release()  # the call returns: measured again, figures exact
                s = wait_for(agent, lambda s: value(s, "kpod_fs_stuck_mounts",
                                                    cgroup=vol.rel) == 0)
                s = wait_for(agent, lambda s: value(s, "kpod_fs_inodes", **mp) is not None)
                assert {f: value(s, f, **mp) for f in WANT} == WANT

                hv.hang_for(agent.proc.pid)  # stuck again, then SIGTERM
                wait_for(agent, lambda s: value(s, "kpod_fs_stuck_mounts", cgroup=vol.rel) == 1)
                took, rc, log = stop_and_log(agent)
                ids = tracker.stop()
            # the stuck call costs fs one stat deadline (half its own); on a loaded machine
            # the helper started in its place may push that one cycle over (then folded)
            assert fs_timeouts is not None and fs_timeouts <= 1, (fs_seconds, log[-3000:])
            assert took <= 10.0, f"SIGTERM took {took:.1f}s"
            assert rc == 0, log[-2000:]
            print(f"\nFIGURE hung-statfs: {c1 - c0:.0f} cycles in {t1 - t0:.1f}s, "
                  f"busy cgroup +{u1 - u0:.2f}s CPU, SIGTERM->exit {took:.2f}s")
            assert log.count("has not returned") == 2 and log.count(") returned after") == 1
            assert ids and still_loaded(ids) == []
        finally:
            spinner.kill()
            spinner.wait()


def _blocked_in_read(pid: int) -> bool:
    """The process sits in a read(2) (syscall 0 on x86-64, 63 on arm64) in the kernel."""
    try:
        with open(f"/proc/{pid}/syscall") as fh:
            nr = fh.read().split()[0]
    except (OSError, IndexError):
        return False
    return nr in ("0", "63")


def test_a_pod_stuck_reading_its_volume_costs_nothing() -> None:
    """A process of the pod hangs in read() on the volume; the agent never reads file
    contents, so the volume is still measured exactly and cycles keep their pace."""
    with make_cgroups("vol") as (vol,), hung_volume(vol, "read") as hv:
        hv.hang_for(0)  # reads wait from now on
        reader = spawn_in(vol, ["nsenter", "-t", str(hv.daemon_pid), "-m", "cat",
                                os.path.join(hv.mountpoint, "data")],
                          stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while not _blocked_in_read(reader.pid):
                assert time.monotonic() < deadline, "reader never blocked in read()"
                time.sleep(0.05)
            with run_agent("--mode", "standalone", "--poll-interval", f"{INTERVAL:g}s") as agent:
                mp = {"cgroup": vol.rel, "mountpoint": hv.mountpoint}
                s = wait_for(agent, lambda s: value(s, "kpod_fs_inodes", **mp) is not None)
                c0, t0 = cycles(s), time.monotonic()
                time.sleep(4.0)
                s = agent.samples()
                c1, t1 = cycles(s), time.monotonic()
                assert {f: value(s, f, **mp) for f in WANT} == WANT
                assert value(s, "kpod_fs_stuck_mounts", cgroup=vol.rel) == 0
                assert c1 - c0 >= 0.7 * (t1 - t0) / INTERVAL
                assert _blocked_in_read(reader.pid)  # still stuck all along
                took, rc, _ = stop_and_log(agent)
            assert took <= 10.0 and rc == 0
            print(f"\nFIGURE hung-read: {c1 - c0:.0f} cycles in {t1 - t0:.1f}s with a reader "
                  f"stuck in read(); SIGTERM->exit {took:.2f}s")
        finally:
            hv.release()
            reader.kill()
            reader.wait()

"""Who held the CPU: a victim's run-queue wait charged to the cgroups it waited behind.

The issue's set-up: a victim cgroup (a 1 ms ticker pinned to CPU 1) behind a culprit
(two spinners pinned to CPU 1), a bystander spinning on CPU 0. Oracles: the victim's
own schedstat run_delay (and the histogram the same program keeps) for its total wait,
and for the shares an independent record of who ran on CPU 1 during each of the
victim's waits (`perf record` of sched_switch and sched_wakeup, replayed here). The
culprit must get at least 80 % of the wait where it is what occupies CPU 1, and our
share must follow perf's within 10 points on a machine where others run on CPU 1 too;
the bystander at most 5 %; the victim's holders add up to its histogram's sum (both
are written from one reading of the clock). Each program variant this kernel can run
is exercised: raw_tp reads the cgroups through probe reads.

A mutant that never records the CPU's turns (every turn charged to the root cgroup)
must fail the share check.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from kpodmetrics.bpf.maps import u64_key
from kpodmetrics.bpf.mapspec import MapDecoder
from kpodmetrics.bpf.structs import KpodCpuStats
from kpodmetrics.collectors.ebpf.runqueue import HOLDERS, CpuSchedCollector
from tests.conftest import require, require_root, slow_factor
from tests.kernel.bpf_mutant import use_mutant
from tests.kernel.cgroup_util import build_helper, make_cgroups, spawn_in
from tests.kernel.test_cpu_runqueue import (
    preferred_variant,
    run_count,
    run_delay_ns,
    sched_switch_args,
)
from tests.kernel.variant_util import start_forced

WORK_MS = 2000
# The culprit spins at a higher priority so that it holds CPU 1 against whatever else a
# shared test machine runs there (on a hybrid host every other process sits in the v2
# root cgroup and competes as an equal; the holder map then names it, rightly).
CULPRIT_NICE = -10


def pinned(cpu: int, exe: str, mode: str, nice: int = 0) -> list[str]:
    return ["nice", "-n", str(nice), "taskset", "-c", str(cpu), exe, mode, str(WORK_MS)]


_SWITCH = re.compile(r"\[(\d+)\]\s+([\d.]+): sched:sched_switch: .*prev_pid=(\d+) "
                     r"prev_prio=\d+ prev_state=(\S+) ==> .*next_pid=(\d+)")
_WAKEUP = re.compile(r"\[(\d+)\]\s+([\d.]+): sched:sched_wakeup: .*pid=(\d+) ")


class SchedTrace:
    """`perf record` of sched_switch and sched_wakeup on every CPU: an independent
    recording of who ran on CPU 1 during each of the victim's waits."""

    def __init__(self, path: str) -> None:
        require(shutil.which("perf") is not None, "perf (linux-perf) records the oracle")
        self.path = path
        ctl, ack = path + ".ctl", path + ".ack"
        os.mkfifo(ctl)
        os.mkfifo(ack)
        # started disabled; "enable" is acknowledged once the events are on
        # --no-buildid: at exit perf would otherwise read its whole record back to find
        # the binaries hit; tracepoints need none, and under QEMU TCG (5.10 in the
        # matrix VM) that pass outlasted a minute
        events = ["--no-buildid", "-e", "sched:sched_switch", "-e", "sched:sched_wakeup",
                  "-o", path]
        self.proc = subprocess.Popen(["perf", "record", "-q", "-a", "-m", "16M", "-D", "-1",
                                      f"--control=fifo:{ctl},{ack}", *events],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not self._handshake(ctl, ack):
            # Seen on 5.10 in the matrix VM: perf never takes "enable" from its control
            # fifo. Record from the start instead and give it time to attach; a late
            # attach shows in the test's check of perf's total against the histogram.
            self.proc.kill()
            self.proc.wait()
            self.proc = subprocess.Popen(["perf", "record", "-q", "-a", "-m", "16M", *events],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(5.0 * slow_factor())
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                pytest.fail(f"perf record did not start: {err.strip()[:500]}")

    def _handshake(self, ctl: str, ack: str, timeout: float = 30.0) -> bool:
        """Write "enable" and read perf's "ack", never blocking on a perf that died;
        False when perf is alive but sent no ack in time."""
        deadline = time.monotonic() + timeout * slow_factor()
        fd = -1
        while fd < 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode() if self.proc.poll() is not None \
                    and self.proc.stderr else ""
                self.proc.kill()
                pytest.fail(f"perf record did not start: {err.strip()[:500]}")
            try:  # ENXIO until perf has opened its end
                fd = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                time.sleep(0.05)
        os.write(fd, b"enable\n")
        os.close(fd)
        afd = os.open(ack, os.O_RDONLY | os.O_NONBLOCK)
        try:
            got = b""
            while b"\n" not in got:
                left = deadline - time.monotonic()
                if self.proc.poll() is not None:
                    pytest.fail("perf record exited before it acknowledged enable")
                if left <= 0:
                    return False
                ready, _, _ = select.select([afd], [], [], left)
                if ready:
                    got += os.read(afd, 64)
        finally:
            os.close(afd)
        assert got.lstrip(b"\0").startswith(b"ack"), got
        return True

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.communicate(timeout=60 * slow_factor())

    def waits_by_runner(self, victim: int, cpu: int) -> tuple[dict[int, int], int]:
        """ns of the victim's waits (wake-up or preemption -> switch-in, on `cpu`)
        during which each pid ran on `cpu` (pid 0: idle), and how many waits ended."""
        out = subprocess.run(["perf", "script", "-i", self.path, "-F", "cpu,time,event,trace",
                              "--ns", "--show-lost-events"], capture_output=True, text=True,
                             check=True).stdout
        assert "LOST" not in out, "perf lost events: its record is no oracle"
        runner, since = -1, 0
        waits = 0
        waiting_since: int | None = None
        by: dict[int, int] = {}
        for line in out.splitlines():
            m = _SWITCH.match(line.strip())
            if m is not None:
                if int(m[1]) != cpu:
                    continue
                t = int(m[2].replace(".", ""))
                prev, state, nxt = int(m[3]), m[4], int(m[5])
                if waiting_since is not None and runner >= 0:
                    by[runner] = by.get(runner, 0) + t - max(since, waiting_since)
                if nxt == victim:
                    if waiting_since is not None:
                        waits += 1
                    waiting_since = None
                if prev == victim and state.startswith("R"):
                    waiting_since = t  # preempted: waits again from now
                runner, since = nxt, t
                continue
            w = _WAKEUP.match(line.strip())
            if w is not None and int(w[3]) == victim and waiting_since is None:
                waiting_since = int(w[2].replace(".", ""))
                since = max(since, waiting_since)  # the runner's part counts from here
        return by, waits


def run_victim_culprit_bystander(collector: CpuSchedCollector) -> dict[str, object]:
    """Run the three cgroups' workloads; the victim's waits by holder cgroup id, its
    histogram sum and count, its schedstat run_delay over the same span, and perf's
    record of who ran on CPU 1 while it waited."""
    require(len(os.sched_getaffinity(0)) >= 2, "needs CPUs 0 and 1")
    exe = build_helper("workload")
    with tempfile.TemporaryDirectory() as workdir, \
            make_cgroups("victim", "culprit", "bystander") as (victim, culprit, bystander):
        procs = [spawn_in(victim, pinned(1, exe, "sleep"), stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE)]
        procs += [spawn_in(culprit, pinned(1, exe, "spin", CULPRIT_NICE), stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE) for _ in range(2)]
        procs.append(spawn_in(bystander, pinned(0, exe, "spin"), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE))
        try:
            for p in procs:
                assert p.stdout is not None and p.stdout.readline() == b"ready\n"
            base, base_turns = run_delay_ns(procs[0].pid), run_count(procs[0].pid)
            trace = SchedTrace(os.path.join(workdir, "sched.data"))
            collector.read_map(HOLDERS.map)  # snap-and-reset: start from zero
            collector.read_map("cpu_stats")
            for p in procs:
                assert p.stdin is not None
                p.stdin.write(b"g")
                p.stdin.flush()
            for p in procs:
                assert p.stdout is not None and p.stdout.readline() == b"done\n"
            run_delay = run_delay_ns(procs[0].pid) - base
            turns = run_count(procs[0].pid) - base_turns
            trace.stop()
            exact, exact_waits = trace.waits_by_runner(procs[0].pid, 1)
            holders = MapDecoder(HOLDERS).decode(collector.read_map(HOLDERS.map)).raw
            stats = {u64_key(k): KpodCpuStats.from_buffer_copy(v)
                     for k, v in collector.read_map("cpu_stats").items()}
        finally:
            for p in procs:
                p.kill()
                p.wait()
    by_holder: dict[int, int] = {}
    for cg, (holder, wait_ns) in holders:
        if cg == victim.id:
            by_holder[holder] = by_holder.get(holder, 0) + wait_ns
    st = stats.get(victim.id)
    return {"by_holder": by_holder, "runq_sum": st.runq.sum if st else 0,
            "runq_count": st.runq.count if st else 0, "run_delay": run_delay,
            "turns": turns, "culprit": culprit.id, "bystander": bystander.id, "victim": victim.id,
            "exact_total": sum(exact.values()), "exact_waits": exact_waits,
            "exact_culprit": sum(exact.get(p.pid, 0) for p in procs[1:3]),
            "exact_bystander": exact.get(procs[3].pid, 0)}


ORACLE_TRIES = 3


def oracle_agrees(o: dict[str, object]) -> bool:
    """perf's record is an oracle only where it saw the victim's waits: as many as
    schedstat's turns (within 5 %, the tolerance the histogram's count gets too) and its
    total within 20 % of schedstat's run_delay (both independent of the program under
    test). In loaded CI runs perf's replay came to 83-89 % of run_delay three times in a
    row while its share matched ours, and once 2.9-3.8 % fewer waits than turns in three
    runs with its total within 2 %; a record short of that is measured again rather than
    trusted."""
    exact_total, run_delay = int(o["exact_total"]), int(o["run_delay"])  # type: ignore[call-overload]
    waits, turns = int(o["exact_waits"]), int(o["turns"])  # type: ignore[call-overload]
    ok = exact_total == pytest.approx(run_delay, rel=0.20) and \
        waits == pytest.approx(turns, rel=0.05)
    print(f"perf's record saw {exact_total / 1e6:.1f} ms in {waits} waits, schedstat "
          f"{run_delay / 1e6:.1f} ms in {turns} turns (histogram "
          f"{int(o['runq_sum']) / 1e6:.1f} ms in {o['runq_count']})"  # type: ignore[call-overload]
          + ("" if ok else ": no oracle, measuring again"))
    return ok


def measure(collector: CpuSchedCollector) -> dict[str, object]:
    """run_victim_culprit_bystander until perf's record is a valid oracle (at most
    ORACLE_TRIES runs; the test fails if none is)."""
    for _ in range(ORACLE_TRIES):
        o = run_victim_culprit_bystander(collector)
        if oracle_agrees(o):
            return o
    pytest.fail(f"perf's record missed the victim's waits in {ORACLE_TRIES} runs")


def check_shares(o: dict[str, object]) -> None:
    by_holder: dict[int, int] = o["by_holder"]  # type: ignore[assignment]
    runq_sum, run_delay = int(o["runq_sum"]), int(o["run_delay"])  # type: ignore[call-overload]
    culprit, bystander = int(o["culprit"]), int(o["bystander"])  # type: ignore[call-overload]
    print(f"victim: {o['runq_count']} waits ({o['turns']} turns in schedstat), histogram "
          f"{runq_sum / 1e6:.1f} ms, schedstat {run_delay / 1e6:.1f} ms; by holder (ms): "
          + ", ".join(f"{h}: {v / 1e6:.2f}" for h, v in sorted(by_holder.items())))
    # the victim's ticker woke it many times (1 ms sleeps; under QEMU TCG fewer fit in
    # its run), and each turn on the CPU follows one wait: schedstat's count of turns
    turns, runq_count = int(o["turns"]), int(o["runq_count"])  # type: ignore[call-overload]
    assert turns > 100, f"the victim ran only {turns} turns: no contention to measure"
    assert runq_count == pytest.approx(turns, rel=0.05), "waits counted != schedstat's turns"
    # precondition on the oracle: the victim waited, and the histogram saw that wait
    assert run_delay > 0 and runq_sum > 0
    total = sum(by_holder.values())
    # one reading feeds both maps: the holders of the victim add up to its histogram
    # (a wait between the two reads may land in one of them only)
    assert total == pytest.approx(runq_sum, rel=0.01)
    # Oracle for the shares: perf's own record of who ran on CPU 1 during each of the
    # victim's waits. Where the culprit is what occupies CPU 1 (the set-up, a
    # quiet machine) it must get >= 80 % of the wait; on a shared machine other
    # processes take CPU 1 too, and our share must then follow perf's within 10 points
    # (we keep the CPU's last 16 turns, perf every turn of the wait).
    exact = int(o["exact_culprit"]) / max(int(o["exact_total"]), 1)  # type: ignore[call-overload]
    ours = by_holder.get(culprit, 0) / runq_sum
    print(f"culprit's share of the victim's wait: ours {ours:.1%}, perf {exact:.1%}")
    assert ours >= min(0.80, exact - 0.10), "culprit's share below perf's"
    assert ours <= exact + 0.10, "culprit's share above perf's"
    assert int(o["exact_bystander"]) == 0, "the bystander never ran on CPU 1"  # type: ignore[call-overload]
    assert by_holder.get(bystander, 0) <= 0.05 * runq_sum


@pytest.mark.kernel
def test_victims_wait_is_charged_to_the_culprit(started_collectors) -> None:  # type: ignore[no-untyped-def]
    require_root()
    collector: CpuSchedCollector = started_collectors(CpuSchedCollector)
    (state,) = collector.signal_states()
    assert state.variant == preferred_variant()
    check_shares(measure(collector))


def _lacks(variant: str) -> str:
    if variant == "raw_tp" and sched_switch_args() < 4:
        return "sched_switch's prev_state argument (5.18)"
    return ""


@pytest.mark.kernel
@pytest.mark.parametrize("variant", ["raw_tp", "raw_tp_3arg"])
def test_holders_through_the_raw_tracepoint_variants(variant: str) -> None:
    require_root()
    collector = start_forced(CpuSchedCollector, "runqueue", variant, lambda _: _lacks(variant))
    try:
        check_shares(measure(collector))
    finally:
        collector.close()


@pytest.mark.kernel
def test_turns_of_the_wrong_cgroup_are_caught(started_collectors, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A mutant whose turns all belong to the root cgroup must fail the check."""
    require_root()
    use_mutant("cpu_sched", "push_turn(turns, now, cg);", "push_turn(turns, now, 1);",
               tmp_path, monkeypatch)
    o = measure(started_collectors(CpuSchedCollector))
    with pytest.raises(AssertionError, match="culprit's share below perf's"):
        check_shares(o)

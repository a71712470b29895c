"""The hash start map does not keep entries of threads that died inside a call.

On kernels without task storage in tracing programs (5.10) the syscall collector
keeps each thread's call start in a HASH keyed by pid_tgid. A thread killed while it
is parked in a tracked call exits through sys_exit with a restart code (the call is
marked interrupted and kept, waiting for its restart) and never comes back: without a
sweep its entry stays until the map is full. Oracle: the processes this test starts,
parks in read() (/proc/<pid>/syscall says so) and kills; the live ones must keep
their entries, the dead ones' entries must be gone after one collect and be counted.
"""

from __future__ import annotations

import subprocess
import time

from kpodmetrics import syscalls
from kpodmetrics.collectors.base import CollectContext
from kpodmetrics.collectors.ebpf.syscalls import SyscallCollector
from kpodmetrics.config import DEFAULT_SYSCALLS
from tests.conftest import require_root
from tests.kernel.test_syscall_counts import lacks
from tests.kernel.variant_util import start_forced

KILLED, KEPT = 40, 5
READ_NR = 0  # x86_64


def parked_in_read(pid: int) -> bool:
    """Asleep inside read(): /proc/<pid>/syscall also names the call of a task merely
    preempted on its way in, before sys_enter's program ran (seen once in the 6.1 VM:
    one `cat` in read() without a start entry), so the task must be sleeping too."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/syscall") as fh:
            return state == "S" and fh.read().split()[0] == str(READ_NR)
    except (OSError, IndexError):
        return False


def start_entries(collector: SyscallCollector) -> set[int]:
    assert collector.obj is not None
    read = collector.obj.map("sys_start").read_all()
    return {int.from_bytes(k, "little") >> 32 for k, _ in read.items()}


def test_entries_of_killed_threads_are_reaped_and_counted() -> None:
    require_root()
    collector = start_forced(SyscallCollector, "syscalls", "hash", lacks("hash"),
                             syscalls.resolve(DEFAULT_SYSCALLS))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs = [subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
                 for _ in range(KILLED + KEPT)]
        deadline = time.monotonic() + 30
        while not all(parked_in_read(p.pid) for p in procs):
            assert time.monotonic() < deadline, "cat did not park in read()"
            time.sleep(0.05)
        pids = {p.pid for p in procs}
        assert pids <= start_entries(collector), "every parked read has a start entry"
        for p in procs[:KILLED]:
            p.kill()
            p.wait()
        dead = {p.pid for p in procs[:KILLED]}
        # the kernel left them behind: killed inside the call, no return to charge
        assert dead <= start_entries(collector)
        list(collector.collect(CollectContext(targets=[], cgroup_root="")))
        left = start_entries(collector)
        assert not dead & left, f"entries of dead threads kept: {sorted(dead & left)}"
        assert {p.pid for p in procs[KILLED:]} <= left, "a live thread's entry was reaped"
        (health,) = [h for h in collector.map_health() if h.map == "sys_start"]
        assert health.reaped >= KILLED
    finally:
        for p in procs:
            p.kill()
            p.wait()
        collector.close()

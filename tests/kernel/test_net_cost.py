"""Cost of each net.bpf.c program per event, from the kernel's own BPF run-time stats.

BPF_ENABLE_STATS (bpf_enable_stats) turns run_time_ns/run_cnt accounting on for as
long as its fd stays open, so nothing is left enabled afterwards and the sysctl is
never touched. The figures come from /proc/self/fdinfo of each program fd.

    sudo .venv/bin/python -m tests.kernel.test_net_cost     # prints the table in docs/net.md
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

import pytest

from kpodmetrics.bpf import libbpf
from kpodmetrics.collectors.ebpf.tcp import NetTcpCollector
from tests.bpf_owned import prog_stats as run_stats
from tests.conftest import require_root
from tests.kernel.cgroup_util import KernelCgroup, build_helper, make_cgroups
from tests.kernel.cost_util import syscall_unit_ns
from tests.kernel.test_net_tcp import (
    Peer,
    input_drop,
    input_rule,
    netns,
    netns_counters,
    port,
    start_client,
    start_server,
)

# A generous ceiling in units of a bare syscall (cost_util): per-event work is a
# handful of loads, one lookup, a few atomics. Host: 1-1.6 units per packet; 6.1 under
# TCG, the fexit variant 2.6; 5.10 under TCG, the same fexit program 18.7 (its
# trampoline stats count time the preemptible program spent off the CPU, we think).
CEILING_UNITS = 25


@contextlib.contextmanager
def bpf_stats() -> Iterator[None]:
    fd = int(libbpf.lib().bpf_enable_stats(libbpf.BPF_STATS_RUN_TIME))
    if fd < 0:
        raise OSError(-fd, f"bpf_enable_stats: {os.strerror(-fd)}")
    try:
        yield
    finally:
        os.close(fd)



def session(ns: str, cgs: tuple[KernelCgroup, KernelCgroup], fam: int, p: int, k: int,
            mode: str, *cmds: str) -> None:
    """A server (`mode`) and a client with `k` connections; the client runs `cmds`,
    closes, and both exit."""
    cli_cg, srv_cg = cgs
    srv = start_server(srv_cg, ns, fam, p, k, mode)
    cli = start_client(cli_cg, ns, fam, p, k)
    assert srv.line() == "accepted"
    for cmd in (*cmds, "close"):
        cli.cmd(cmd)
    srv.line()
    cli.wait()
    srv.wait()


def traffic() -> None:
    """Bulk echo, ping-pong, IPv6 echo and sendfile, refused connects, lossy bulk, lost
    handshake ACKs (private netns)."""
    with netns() as ns, make_cgroups("client", "server") as cgs:
        cli_cg, srv_cg = cgs
        p = port()
        session(ns, cgs, 4, p, 20, "echo", "sendecho 50000000", "ping 20000")
        # IPv6 and sendfile: where the fexit variant runs (before 6.3) their handlers
        # are programs of their own (inet6_sendmsg/recvmsg, inet_sendpage)
        session(ns, cgs, 6, p, 1, "echo", "sendecho 5000000")
        session(ns, cgs, 4, p, 1, "sink", "sendfile 5000000")  # nothing echoed back unread
        for _ in range(20):
            r = Peer(cli_cg, [build_helper("tcp_peer"), "refused", f"/run/netns/{ns}", "4",
                              str(p + 1)])
            r.line()
            r.wait()
        with input_drop(ns, p, 10):
            session(ns, cgs, 4, p, 1, "sink", "send 20000000")
        # SYN-ACK retransmits: lose the handshake ACK until the server has resent once
        srv = start_server(srv_cg, ns, 4, p, 1, "sink")
        with input_rule(ns, "tcp", "dport", str(p), "tcp", "flags", "!=", "syn", "drop"):
            before = netns_counters(ns)["TcpExt.TCPSynRetrans"]
            cli = start_client(cli_cg, ns, 4, p, 1)
            end = time.monotonic() + 10
            while netns_counters(ns)["TcpExt.TCPSynRetrans"] == before and time.monotonic() < end:
                time.sleep(0.05)
        srv.line()
        cli.cmd("close")
        srv.line()
        cli.wait()
        srv.wait()


def measure() -> dict[str, tuple[int, int]]:
    """program -> (events, total ns) over `traffic()` (plus whatever the host did)."""
    c = NetTcpCollector()
    c.start()
    try:
        fds = c.program_fds()
        with bpf_stats():
            base = {n: run_stats(fd) for n, fd in fds.items()}
            traffic()
            end = {n: run_stats(fd) for n, fd in fds.items()}
    finally:
        c.close()
    return {n: (end[n][1] - base[n][1], end[n][0] - base[n][0]) for n in fds}


@pytest.mark.kernel
def test_every_program_runs_and_stays_cheap() -> None:
    require_root()
    unit = syscall_unit_ns()
    got = measure()
    print(f"\nbare syscall {unit:.0f} ns; " + ", ".join(
        f"{n} {ns / max(ev, 1) / unit:.1f} units ({ev} events)" for n, (ev, ns) in sorted(got.items())))
    for name, (events, ns) in got.items():
        assert events > 0, f"{name} never ran"
        # the ceiling is for the per-packet hooks; a hook that ran twice (SYN-ACK
        # retransmits) measures cold caches, not its steady cost
        if events >= 1000:
            assert ns / events < CEILING_UNITS * unit, \
                f"{name}: {ns / events:.0f} ns/event, a bare syscall {unit:.0f} ns"


if __name__ == "__main__":
    rows = measure()
    print(f"{'program':<18} {'events':>10} {'ns/event':>9}")
    for name, (events, ns) in sorted(rows.items()):
        print(f"{name:<18} {events:>10} {ns / max(events, 1):>9.0f}")

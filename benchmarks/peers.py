"""The libbpf-tools peers people attach today, and what each is compared with.

runqlat (sched_switch/wakeup, the same hooks as the cpu collector), syscount -L
(raw_syscalls enter/exit with latency, like the syscall collector), tcpstates
(sock:inet_sock_set_state, one of the net collector's hooks) and tcprtt (kprobe or
fentry on tcp_rcv_established: it does not attach on kernels without either, and is
then reported as down rather than silently left out). Each runs until SIGINT.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Peer:
    name: str
    argv: tuple[str, ...]
    compares_with: str  # the kpod-metrics profile whose hooks it overlaps
    note: str


PEERS: tuple[Peer, ...] = (
    Peer("runqlat", ("runqlat",), "standard",
         "global run-queue latency histogram (tp_btf sched_wakeup/switch)"),
    Peer("syscount-L", ("syscount", "-L"), "comprehensive",
         "per-syscall counts with latency (raw_syscalls sys_enter/sys_exit)"),
    Peer("tcpstates", ("tcpstates",), "standard",
         "TCP state changes (sock:inet_sock_set_state), prints every event"),
    Peer("tcprtt", ("tcprtt",), "standard",
         "TCP RTT histogram (fentry/kprobe tcp_rcv_established)"),
)


def available(peers: tuple[Peer, ...] = PEERS) -> tuple[list[Peer], dict[str, str]]:
    """Peers whose binary is installed, and why the others are missing."""
    found, missing = [], {}
    for p in peers:
        if shutil.which(p.argv[0]):
            found.append(p)
        else:
            missing[p.name] = f"{p.argv[0]} not on PATH (Debian package libbpf-tools)"
    return found, missing

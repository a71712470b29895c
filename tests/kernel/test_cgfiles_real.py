"""cgroup-file collectors on real kernel files, against independent oracles.

- iface: two network namespaces of our own joined by a veth pair (IPv6 off, static
  neighbour entries, so nothing but our datagrams crosses it); exact L2 byte counts
  (payload + 8 UDP + 20 IPv4 + 14 Ethernet) and packet counts; a process on the host
  network is not reported.
- fs: a tmpfs mounted in a private mount namespace of a process in a test cgroup,
  filled with a known number of pages and inodes; the host does not see it.
- cpustat: CPU time of a process that lived only in the test cgroup against its own
  rusage from wait4; an idle sibling stays at zero.
- pressure: two spinners pinned to one CPU; PSI cpu "some" time lies between the
  larger and the sum of their run-queue waits (/proc/<pid>/schedstat).
Everything created (cgroups, namespaces, veths, mounts) is removed, even on failure.

The "host" reference process is this test runner (`HOST_PID`), which lives in the
host's network and mount namespaces: on the development machines pid 1 is
non-dumpable and its /proc/1/ns links cannot be read even by root.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest

from kpodmetrics.collectors.base import CollectContext
from kpodmetrics.collectors.files import cpu_stat as cpustat
from kpodmetrics.collectors.files import net_dev as iface
from kpodmetrics.collectors.files import pressure
from kpodmetrics.collectors.files import volumes as fs
from kpodmetrics.pods.owner import CgroupRef, Owner
from kpodmetrics.samples import HistogramSample, Labels, Sample
from tests.conftest import require, require_root
from tests.kernel.cgroup_util import (
    PYTHON,
    KernelCgroup,
    cpu_ns,
    make_cgroups,
    move_in,
    spawn_in,
)

pytestmark = pytest.mark.kernel
HOST_PID = os.getpid()
Key = tuple[str, int, Labels]


def ref_of(cg: KernelCgroup, *, kubernetes: bool = False) -> CgroupRef:
    labels = ((("namespace", "t"), ("pod", cg.rel), ("container", "")) if kubernetes
              else (("cgroup", cg.rel),))
    return CgroupRef(cg.id, cg.path, Owner(cg.rel, labels), pod_key=cg.rel, pod_level=True)


def collect(col: object, refs: list[CgroupRef]) -> tuple[dict[Key, float], dict[str, int]]:
    ctx = CollectContext(targets=refs, cgroup_root="/", proc_root="/proc")
    out: dict[Key, float] = {}
    for s in col.collect(ctx):  # type: ignore[attr-defined]
        assert isinstance(s, Sample) and not isinstance(s, HistogramSample)
        out[(s.family.name, s.cgroup_id, s.labels)] = s.value
    return out, ctx.errors


def prerequisites(*tools: str) -> None:
    require_root()
    for tool in tools:
        require(shutil.which(tool) is not None, f"needs {tool}")


# -- interface counters ------------------------------------------------------------

UDP_PEER = r"""
import socket, sys
me, port, peer, peer_port = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.bind((me, port))
print("ready", flush=True)
for line in sys.stdin:
    count, size = map(int, line.split())
    for _ in range(count):
        s.sendto(b"k" * size, (peer, peer_port))
    print("sent", flush=True)
"""


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


@contextlib.contextmanager
def veth_pair() -> Iterator[tuple[str, str]]:
    tag = uuid.uuid4().hex[:8]
    a, b = f"kpod-test-{tag}a", f"kpod-test-{tag}b"
    try:
        for ns in (a, b):
            ip("netns", "add", ns)
            for key in ("all", "default"):
                subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                                f"net.ipv6.conf.{key}.disable_ipv6=1"], check=True)
        ip("link", "add", f"kv{tag}a", "netns", a, "type", "veth", "peer", "name",
           f"kv{tag}b", "netns", b)
        macs = {}
        for ns, dev, addr in ((a, f"kv{tag}a", "10.213.0.1/30"), (b, f"kv{tag}b", "10.213.0.2/30")):
            ip("-n", ns, "addr", "add", addr, "dev", dev)
            macs[ns] = json.loads(ip("-n", ns, "-j", "link", "show", dev))[0]["address"]
        ip("-n", a, "neigh", "replace", "10.213.0.2", "lladdr", macs[b], "dev", f"kv{tag}a",
           "nud", "permanent")
        ip("-n", b, "neigh", "replace", "10.213.0.1", "lladdr", macs[a], "dev", f"kv{tag}b",
           "nud", "permanent")
        for ns, dev in ((a, f"kv{tag}a"), (b, f"kv{tag}b")):
            ip("-n", ns, "link", "set", dev, "up")
        yield a, b
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def start_peer(argv: list[str], **kw: object) -> subprocess.Popen[str]:
    proc: subprocess.Popen[str] = subprocess.Popen(  # type: ignore[call-overload]
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, **kw)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def send(proc: subprocess.Popen[str], count: int, size: int) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{count} {size}\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "sent"


def test_iface_exact_bytes_in_own_netns_and_host_network_skipped() -> None:
    prerequisites("ip", "sysctl")
    procs: list[subprocess.Popen[str]] = []
    with make_cgroups("pod", "hostnet") as (cg, hostcg), veth_pair() as (ns_a, ns_b):
        try:
            in_pod = start_peer(["ip", "netns", "exec", ns_a, PYTHON, "-c", UDP_PEER,
                                 "10.213.0.1", "5001", "10.213.0.2", "5002"])
            procs.append(in_pod)
            cg.add(in_pod.pid)  # `ip netns exec` execs python: same pid
            outside = start_peer(["ip", "netns", "exec", ns_b, PYTHON, "-c", UDP_PEER,
                                  "10.213.0.2", "5002", "10.213.0.1", "5001"])
            procs.append(outside)
            hostnet = subprocess.Popen(["sleep", "60"])
            hostcg.add(hostnet.pid)
            col = iface.IfaceCollector(host_pid=HOST_PID)
            refs = [ref_of(cg), ref_of(hostcg)]
            before, errors = collect(col, refs)
            assert errors == {}
            rx_n, rx_size, tx_n, tx_size = 7, 1000, 5, 300
            send(outside, rx_n, rx_size)
            send(in_pod, tx_n, tx_size)
            dev = next(iter({k[2] for k in before}))
            assert dev[0][1].startswith("kv") and {k[2] for k in before} == {dev}
            want = {"rx_bytes": rx_n * (rx_size + 42), "rx_packets": rx_n,
                    "tx_bytes": tx_n * (tx_size + 42), "tx_packets": tx_n,
                    "rx_errors": 0, "rx_drops": 0, "tx_errors": 0, "tx_drops": 0}
            deadline = time.monotonic() + 3
            while True:
                after, errors = collect(col, refs)
                got = {k: after[(f"kpod_net_iface_{k}_total", cg.id, dev)]
                       - before[(f"kpod_net_iface_{k}_total", cg.id, dev)] for k in want}
                if got == want or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert got == want
            assert errors == {}
            # the host-network cgroup and lo are never reported
            assert {k[1] for k in after} == {cg.id}
            hostnet.kill()
            hostnet.wait()
        finally:
            for p in procs:
                p.kill()
                p.wait()


# -- filesystem --------------------------------------------------------------------

FILL = r"""
import os, subprocess, sys
mnt, procs = sys.argv[1], sys.argv[2]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,nr_inodes=1000", "kpod-test-tmpfs", mnt],
               check=True)
for name, size in (("a", 1 << 20), ("b", 512 << 10), ("c", 4096)):
    with open(os.path.join(mnt, name), "wb") as fh:
        fh.write(b"x" * size)
os.mkdir(os.path.join(mnt, "sub"))
with open(procs, "w") as fh:
    fh.write(str(os.getpid()))
print("ready", flush=True)
sys.stdin.read()
"""


def test_fs_tmpfs_in_private_mount_namespace() -> None:
    prerequisites("unshare", "mount")
    mnt = tempfile.mkdtemp(prefix="kpod-test-")
    try:
        with make_cgroups("pod") as (cg,):
            helper = subprocess.Popen(
                ["unshare", "-m", "--propagation", "private", PYTHON, "-c", FILL, mnt,
                 os.path.join(cg.path, "cgroup.procs")],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            try:
                assert helper.stdout is not None
                assert helper.stdout.readline().strip() == "ready"
                page = os.sysconf("SC_PAGE_SIZE")
                used = ((1 << 20) + (512 << 10) + 4096 + page - 1) // page * page
                want = {
                    "kpod_fs_capacity_bytes": 8 << 20,
                    "kpod_fs_usage_bytes": used,
                    "kpod_fs_available_bytes": (8 << 20) - used,
                    "kpod_fs_inodes": 1000,
                    "kpod_fs_inodes_free": 1000 - 5,  # root, a, b, c, sub
                }
                mp = (("mountpoint", mnt),)
                # standalone: only what the host's mount namespace lacks -> just our tmpfs
                got, errors = collect(fs.FsCollector(host_pid=HOST_PID), [ref_of(cg)])
                assert errors == {}
                assert got == {(f, cg.id, mp): float(v) for f, v in want.items()} | {
                    ("kpod_fs_stuck_mounts", cg.id, ()): 0.0}
                # Kubernetes rules: our tmpfs is a pod volume too
                got_k8s, errors = collect(fs.FsCollector(host_pid=HOST_PID),
                                          [ref_of(cg, kubernetes=True)])
                assert errors == {}
                for f, v in want.items():
                    assert got_k8s[(f, cg.id, mp)] == v
                assert not any(k[2] and k[2][0][1] in ("/", "/proc", "/etc/hosts")
                               for k in got_k8s)
                assert not os.path.ismount(mnt)  # the host never saw the mount
            finally:
                helper.kill()
                helper.wait()
    finally:
        os.rmdir(mnt)


# -- cpu.stat and pressure ---------------------------------------------------------

SPIN = r"""
import os, sys, time
if len(sys.argv) > 2:
    os.sched_setaffinity(0, {int(sys.argv[2])})
print("ready", flush=True)
sys.stdin.readline()
end = time.process_time() + float(sys.argv[1])
while time.process_time() < end:
    pass
with open("/proc/self/schedstat") as fh:
    print(fh.read().split()[1], flush=True)
sys.stdin.readline()
"""
"""Spins argv[1] s of CPU (pinned to CPU argv[2] if given) between two lines on stdin,
then prints its run_delay (ns) and blocks again: its waits end where it says, and
nothing it does after that (print, interpreter teardown) competes for the CPU before
the test has read the cgroup's files."""

def test_cpustat_usage_matches_rusage_and_idle_stays_zero() -> None:
    require_root()
    with make_cgroups("busy", "idle") as (busy, idle):
        # started outside the cgroup and moved in while it blocks: its CPU time before
        # the move (fork, interpreter start-up: 50 ms under QEMU TCG) is known exactly
        proc = subprocess.Popen([PYTHON, "-c", SPIN, "0.4"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdin is not None and proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        outside = cpu_ns(proc.pid) / 1e9
        move_in(busy, proc.pid)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        proc.stdout.readline()
        proc.stdin.close()  # the last readline returns: it exits
        _, status, rusage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        assert proc.returncode == 0
        oracle = rusage.ru_utime + rusage.ru_stime - outside
        got, errors = collect(cpustat.CpuStatCollector(), [ref_of(busy), ref_of(idle)])
        assert errors == {}
        usage = got[("kpod_cpu_usage_seconds_total", busy.id, ())]
        assert oracle >= 0.4
        assert usage == pytest.approx(oracle, rel=0.02, abs=0.01)
        assert got[("kpod_cpu_user_seconds_total", busy.id, ())] + got[
            ("kpod_cpu_system_seconds_total", busy.id, ())] == pytest.approx(usage, abs=0.02)
        assert got[("kpod_cpu_usage_seconds_total", idle.id, ())] == 0.0


def test_pressure_cpu_some_bounded_by_run_queue_waits() -> None:
    require_root()
    require(os.path.exists("/proc/pressure/cpu"), "needs PSI (psi=1)")
    cpu = sorted(os.sched_getaffinity(0))[0]
    with make_cgroups("contended", "idle") as (cg, idle):
        col = pressure.PressureCollector()
        before, errors = collect(col, [ref_of(cg), ref_of(idle)])
        assert errors == {}
        spinners = [spawn_in(cg, [PYTHON, "-c", SPIN, "0.5", str(cpu)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True) for _ in range(2)]
        for p in spinners:
            assert p.stdout is not None and p.stdout.readline() == "ready\n"
        for p in spinners:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        # each reports its waits, then blocks: PSI is read while neither is runnable
        waits = [int(p.stdout.readline().strip()) / 1e9 for p in spinners if p.stdout]
        after, errors = collect(col, [ref_of(cg), ref_of(idle)])
        for p in spinners:
            p.communicate(input="", timeout=30)
        assert errors == {}
        key = ("kpod_pressure_cpu_waiting_seconds_total", cg.id, ())
        some = after[key] - before[key]
        assert max(waits) > 0.2  # the two really competed for one CPU
        assert max(waits) - 0.02 <= some <= sum(waits) + 0.02
        for res in ("cpu", "memory", "io"):
            k = (f"kpod_pressure_{res}_waiting_seconds_total", idle.id, ())
            assert after[k] == 0.0

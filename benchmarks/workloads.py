"""The workloads whose slowdown is measured; each returns a cost per operation.

Costs (not rates) so that slowdown = cost_with / cost_without - 1 reads directly as
"+x % per context switch / syscall / round trip". The C helpers are compiled once per
run from benchmarks/helpers/ into a temporary directory.
"""

from __future__ import annotations

import re
import resource
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HELPERS = Path(__file__).resolve().parent / "helpers"


@dataclass(frozen=True, slots=True)
class Sizes:
    pipe_loops: int
    syscalls: int
    tcp_rr: int
    tcp_stream_mib: int


FULL = Sizes(pipe_loops=200_000, syscalls=1_000_000, tcp_rr=50_000, tcp_stream_mib=1024)
QUICK = Sizes(pipe_loops=5_000, syscalls=50_000, tcp_rr=2_000, tcp_stream_mib=32)


@dataclass(frozen=True, slots=True)
class Cost:
    """Wall time per operation (what the workload reports) and CPU time per operation
    (user+sys of the workload's processes, from rusage). CPU time includes the BPF
    programs that run in the workload's context but not time stolen by other tasks,
    so it is the steadier of the two on a shared machine."""

    wall_ns: float
    cpu_ns: float


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    unit: str  # what one operation is
    run: Callable[[], Cost]


class WorkloadError(RuntimeError):
    pass


def build(tmp: Path) -> dict[str, str]:
    """Compile the helpers; returns name -> binary path."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise WorkloadError("no C compiler (cc) for benchmarks/helpers")
    out = {}
    for src in sorted(HELPERS.glob("*.c")):
        binary = tmp / src.stem
        subprocess.run([cc, "-O2", "-Wall", "-o", str(binary), str(src)], check=True)
        out[src.stem] = str(binary)
    return out


_PIPE = re.compile(r"([\d.]+)\s+usecs/op")
_NS = re.compile(r"ns_per_op\s+([\d.]+)")


def parse_perf_pipe(text: str) -> float:
    """`perf bench sched pipe` output -> ns per operation (one round trip of the pipe)."""
    m = _PIPE.search(text)
    if not m:
        raise WorkloadError(f"unexpected perf output: {text.strip()[-200:]!r}")
    return float(m.group(1)) * 1000.0


def parse_helper(text: str) -> float:
    m = _NS.search(text)
    if not m:
        raise WorkloadError(f"unexpected helper output: {text.strip()[-200:]!r}")
    return float(m.group(1))


def _cpu_children() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _run(argv: list[str], parse: Callable[[str], float], ops: int,
         timeout: float = 300) -> Cost:
    c0 = _cpu_children()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    cpu = _cpu_children() - c0
    if out.returncode != 0:
        raise WorkloadError(f"{argv[0]} failed ({out.returncode}): {out.stderr.strip()[-300:]}")
    return Cost(parse(out.stdout + out.stderr), cpu * 1e9 / max(ops, 1))


def make(sizes: Sizes, binaries: dict[str, str]) -> tuple[list[Workload], dict[str, str]]:
    """The workloads this machine can run, and why any are missing."""
    found: list[Workload] = []
    missing: dict[str, str] = {}
    if shutil.which("perf"):
        found.append(Workload(
            "sched-pipe", "pipe round trip (2 context switches)",
            lambda: _run(["perf", "bench", "sched", "pipe", "-l", str(sizes.pipe_loops)],
                         parse_perf_pipe, sizes.pipe_loops)))
    else:
        missing["sched-pipe"] = "perf not on PATH (Debian package linux-perf)"
    found.append(Workload("syscalls", "syscall",
                          lambda: _run([binaries["syscalls"], str(sizes.syscalls)], parse_helper,
                                       3 * sizes.syscalls)))
    found.append(Workload("tcp-rr", "64-byte TCP round trip",
                          lambda: _run([binaries["tcploop"], "rr", str(sizes.tcp_rr)],
                                       parse_helper, sizes.tcp_rr)))
    found.append(Workload("tcp-stream", "MiB over TCP loopback",
                          lambda: _run([binaries["tcploop"], "stream",
                                        str(sizes.tcp_stream_mib)], parse_helper,
                                       sizes.tcp_stream_mib)))
    return found, missing

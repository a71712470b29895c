"""32-bit (ia32) tasks' syscalls are counted under their own names (issue 14).

An ia32 call is numbered in the i386 table: read is 3 there, and 3 is close on
x86_64. A static 32-bit helper (gcc -m32 -static) makes exact numbers of read, failing
close, and openat+close calls, once through glibc's syscall() (the vDSO's fast
sysenter/syscall entry) and once through int $0x80; a 64-bit helper makes ia32 close
calls through int $0x80 (a compat call of a 64-bit task, which only the kernel's
TS_COMPAT tells apart). The collector must report each count under its true name and
give no other tracked name (x86_64 close for the reads, ...) anything. The restart
logic must hold for ia32 calls too: an ia32 EINTR comes back from sigreturn as a 32-bit
value. Both start-map variants.
"""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Iterator

import pytest

from kpodmetrics import syscalls
from kpodmetrics.bpf.structs import KpodSysStats
from kpodmetrics.collectors.base import CollectContext
from kpodmetrics.collectors.ebpf.syscalls import SyscallCollector
from kpodmetrics.config import DEFAULT_SYSCALLS
from tests.conftest import require, require_root
from tests.kernel.cgroup_util import BUILD, HELPERS, KernelCgroup, make_cgroups, spawn_in
from tests.kernel.test_syscall_counts import lacks, per_key
from tests.kernel.variant_util import start_forced

READS = 700
BAD_CLOSES = 300
OPENS = 50
SIGNALS = 50


def build(bits: int) -> str:
    """tests/helpers/sys_calls_ia32.c, built static 32-bit (bits=32) or natively (64)."""
    require(platform.machine() in ("x86_64", "amd64"), "ia32 syscalls exist on x86_64 only")
    src = HELPERS / "sys_calls_ia32.c"
    BUILD.mkdir(parents=True, exist_ok=True)
    out = BUILD / f"sys_calls_ia32_{bits}"
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        flags = ["-m32", "-static"] if bits == 32 else []
        r = subprocess.run(["gcc", *flags, "-O2", "-Wall", "-o", str(out), str(src)],
                           capture_output=True, text=True)
        require(r.returncode == 0, "cannot build a 32-bit static helper (apt-get install "
                f"gcc-multilib): {r.stderr.strip()[-300:]}")
    return str(out)


def ia32_runs(exe: str) -> None:
    """The kernel runs 32-bit programs (IA32_EMULATION, not ia32_emulation=0)."""
    try:
        r = subprocess.run([exe, "calls", "0", "0", "0", "libc"], input=b"g", timeout=0.5,
                           capture_output=True)
        ok, why = r.stdout.startswith(b"ready"), f"exit {r.returncode}"
    except subprocess.TimeoutExpired:  # it printed done and pause()d: it ran
        ok, why = True, ""
    except OSError as exc:
        ok, why = False, str(exc)
    require(ok, f"the kernel does not run ia32 binaries (CONFIG_IA32_EMULATION): {why}")


@pytest.fixture(scope="module")
def helper32() -> str:
    exe = build(32)
    ia32_runs(exe)
    return exe


@pytest.fixture(params=["task_storage", "hash"])
def collector(request: pytest.FixtureRequest) -> Iterator[SyscallCollector]:
    """The collector on each variant of its start map (as in test_syscall_counts.py)."""
    require_root()
    c = start_forced(SyscallCollector, "syscalls", request.param, lacks(request.param),
                     syscalls.resolve(DEFAULT_SYSCALLS))
    yield c
    c.close()


def run(cg: KernelCgroup, argv: list[str], collector: SyscallCollector
        ) -> tuple[list[bytes], dict[tuple[int, int], KpodSysStats]]:
    """Start the helper in `cg`, reset the map once it is ready, release it, and read
    the map after its done line: (done line words, stats per (cgroup, key nr))."""
    p = spawn_in(cg, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert p.stdout is not None and p.stdin is not None
        assert p.stdout.readline() == b"ready\n"
        collector.read_map("sys_stats")  # from zero
        p.stdin.write(b"g")
        p.stdin.flush()
        words = p.stdout.readline().split()
        assert words and words[0] == b"done", (words, p.poll())
        got = per_key(collector.read_map("sys_stats").items())
    finally:
        p.kill()
        p.wait()
    return words, got


def counts(got: dict[tuple[int, int], KpodSysStats], cg: KernelCgroup,
           collector: SyscallCollector) -> dict[str, tuple[int, int]]:
    """name -> (calls, errors) of `cg`, as the collector names its keys; every key of
    the cgroup must have a name."""
    out: dict[str, tuple[int, int]] = {}
    for (cgid, nr), st in got.items():
        if cgid != cg.id:
            continue
        assert nr in collector.names, f"key nr {nr:#x} has no name"
        name = collector.names[nr]
        calls, errors = out.get(name, (0, 0))
        out[name] = (calls + int(st.latency.count), errors + int(st.errors))
    return out


def only(got: dict[str, tuple[int, int]], want: dict[str, tuple[int, int]]) -> None:
    """`got` is `want` exactly, except the write of the done line, which may not have
    returned yet when the map is read."""
    write = got.pop("write", (0, 0))
    assert write in ((0, 0), (1, 0))
    assert got == want


@pytest.mark.kernel
@pytest.mark.parametrize("how", ["libc", "int80"])
def test_ia32_calls_are_named_by_the_ia32_table(collector: SyscallCollector, helper32: str,
                                                how: str) -> None:
    with make_cgroups("ia32") as (cg,):
        words, got = run(cg, [helper32, "calls", str(READS), str(BAD_CLOSES), str(OPENS),
                              how], collector)
    assert int(words[1]) == READS + BAD_CLOSES + 2 * OPENS
    mine = counts(got, cg, collector)
    # reads: the helper's plus its read of stdin that released it; closes: the failing
    # ones and one per open; openats: the helper's plus glibc's open of /dev/zero;
    # nothing under any other tracked name (old programs gave
    # the reads to x86_64 close (3) and lost the closes (6, x86_64 lstat) and the
    # openats (295, x86_64 preadv))
    only(mine, {"read": (READS + 1, 0), "close": (BAD_CLOSES + OPENS, BAD_CLOSES),
                "openat": (OPENS + 1, 0)})
    # a 32-bit task has no native keys at all (even its done line is ia32 write, 4)
    native = {nr for (cgid, nr) in got if cgid == cg.id and nr < syscalls.NR_LIMIT}
    assert not native, f"native keys for a 32-bit task: {sorted(native)}"


@pytest.mark.kernel
def test_int80_from_a_64_bit_task(collector: SyscallCollector) -> None:
    exe = build(64)
    with make_cgroups("int80") as (cg,):
        _, got = run(cg, [exe, "int80_close", str(BAD_CLOSES)], collector)
    mine = counts(got, cg, collector)
    # the release read(0) and the done write are native calls of the 64-bit task
    only(mine, {"read": (1, 0), "close": (BAD_CLOSES, BAD_CLOSES)})


@pytest.mark.kernel
@pytest.mark.parametrize("sa_restart", [1, 0], ids=["sa_restart", "eintr"])
def test_ia32_interrupted_read(collector: SyscallCollector, helper32: str,
                               sa_restart: int) -> None:
    """The restart logic with ia32 numbers: restarted reads are one call, EINTRs (read
    back from the 32-bit signal frame) are errors, exactly as the helper saw them."""
    with make_cgroups("intr") as (cg,):
        words, got = run(cg, [helper32, "interrupted", str(SIGNALS), str(sa_restart)],
                         collector)
    reads, eintr, handled = (int(w) for w in words[1:4])
    assert handled >= SIGNALS // 2, "the signals must have interrupted the read"
    if sa_restart:
        assert (reads, eintr) == (1, 0)
    else:
        assert eintr >= SIGNALS // 2 and reads == eintr + 1
    mine = counts(got, cg, collector)
    # the helper's reads plus the release read; the child's calls (its own cgroup's,
    # the same) are a nanosleep, kill and write, none tracked but write
    mine.pop("write", None)
    assert mine == {"read": (reads + 1, eintr)}


@pytest.mark.kernel
def test_collect_merges_native_and_ia32_series(collector: SyscallCollector,
                                               helper32: str) -> None:
    """A cgroup with a 64-bit and a 32-bit task: one `read` series holding both."""
    exe64 = build(64)
    ctx = CollectContext(targets=[], cgroup_root="")
    with make_cgroups("mixed") as (cg,):
        procs = [spawn_in(cg, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                 for argv in ([helper32, "calls", str(READS), "0", "0", "libc"],
                              [exe64, "int80_close", str(BAD_CLOSES)])]
        try:
            for p in procs:
                assert p.stdout is not None and p.stdout.readline() == b"ready\n"
            list(collector.collect(ctx))  # from zero
            for p in procs:
                assert p.stdin is not None and p.stdout is not None
                p.stdin.write(b"g")
                p.stdin.flush()
                assert p.stdout.readline().startswith(b"done")
            out = [s for s in collector.collect(ctx) if s.cgroup_id == cg.id]
        finally:
            for p in procs:
                p.kill()
                p.wait()
    series = [(s.family.name, s.labels) for s in out]
    assert len(series) == len(set(series)), "one sample per family and name"
    count = {dict(s.labels)["syscall"]: getattr(s, "value", None) for s in out
             if s.family.name == "kpod_syscall_count_total"}
    # 32-bit: READS reads + its release read; 64-bit: its release read (native)
    assert count["read"] == READS + 2
    assert count["close"] == BAD_CLOSES

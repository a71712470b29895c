"""Block I/O latency per cgroup against io.stat, the workload's own op counts and biolatency.

A child in a test cgroup makes READS O_DIRECT 4 KiB reads and WRITES O_DIRECT 4 KiB
overwrites of an allocated file (one request each: aligned, one page, nothing to
merge: each waits for the previous one). Its cgroup's histogram must hold exactly
those operations on the file's disk:

- where the io controller is on cgroup v2 (the VMs), io.stat's rios/wios of the cgroup
  are the oracle (the block layer's own per-blkcg counts), and must equal ours;
- on a hybrid host (io controller on v1, like this build machine) io.stat does not
  exist and the bio's blkcg is a v1 cgroup: the fallback charges the submitter, and
  the oracle is the workload's own count.

libbpf-tools' biolatency runs over the same window: it must have seen at least as
many reads on the disk, with a median in the same power-of-two range (it
buckets µs, we bucket ns: allowed one bucket apart). Where biolatency's program is
refused (it picks block_rq_* by release number; Debian's 5.10 has 5.11's), the test says
so and io.stat alone is the oracle, with no loss allowed. An idle cgroup stays absent.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from kpodmetrics.bpf import libbpf
from kpodmetrics.bpf.errors import BpfError
from kpodmetrics.bpf.loader import BpfObject, LoadOptions
from kpodmetrics.bpf.structs import KpodBioKey, KpodBioStats
from kpodmetrics.collectors.ebpf.block_io import SIGNAL, BlockIOCollector, devno
from tests.bpf_owned import prog_stats
from tests.conftest import require, require_root
from tests.kernel.cgroup_util import PYTHON, build_helper, make_cgroups, spawn_in
from tests.kernel.test_cpu_runqueue import tracepoint_args

READS, WRITES = 400, 150
FILE_PAGES = 16384  # 64 MiB
TEST_DIR = os.environ.get("KPOD_TEST_BIO_DIR", "/var/tmp")

WORKLOAD = r"""
import mmap, os, sys
path, reads, writes, pages = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
fd = os.open(path, os.O_RDWR | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
print("ready", flush=True)
sys.stdin.read(1)
for i in range(reads):
    assert os.preadv(fd, [buf], (i * 7919 % pages) * 4096) == 4096
for i in range(writes):
    assert os.pwritev(fd, [buf], (i * 4099 % pages) * 4096) == 4096
print("done", flush=True)
sys.stdin.read(1)
"""



def enable_io(parent: str) -> None:
    """Give the test's children their own blkcg where cgroup v2 has the io controller:
    without it their I/O is charged (by the block layer, io.stat and us alike) to the
    nearest ancestor that has it."""
    with open(os.path.join(parent, "cgroup.controllers")) as fh:
        if "io" not in fh.read().split():
            return
    with open(os.path.join(parent, "cgroup.subtree_control"), "w") as fh:
        fh.write("+io")


def io_stat(path: str, dev: str) -> dict[str, int] | None:
    """rios/wios of one device from a cgroup's io.stat; None when the file is absent."""
    try:
        with open(os.path.join(path, "io.stat")) as fh:
            text = fh.read()
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == dev:
            return {k: int(v) for k, _, v in (f.partition("=") for f in fields[1:])}
    return {}


def disk_of(path: str) -> tuple[str, str]:
    """(MAJ:MIN of the whole disk, its name) holding `path`."""
    st = os.stat(path)
    part = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    sysdir = os.path.realpath(f"/sys/dev/block/{part}")
    if os.path.exists(os.path.join(sysdir, "partition")):
        sysdir = os.path.dirname(sysdir)
    with open(os.path.join(sysdir, "dev")) as fh:
        return fh.read().strip(), os.path.basename(sysdir)


def biolatency_direct_reads(text: str) -> list[tuple[int, int, int]]:
    """(lo_us, hi_us, count) rows of biolatency -F's read histograms, merged, except
    readahead and metadata reads (the page cache's and the filesystem's, never ours;
    whether O_DIRECT reads carry Sync differs between kernels)."""
    rows: dict[tuple[int, int], int] = {}
    take = False
    for line in text.splitlines():
        if line.startswith("flags = "):
            flags = line.split("=", 1)[1].strip().split("-")
            take = flags[-1] == "Read" and not {"ReadAhead", "Metadata"} & set(flags)
            continue
        m = re.match(r"\s*(\d+) -> (\d+)\s*: (\d+)", line)
        if m and take:
            key = (int(m[1]), int(m[2]))
            rows[key] = rows.get(key, 0) + int(m[3])
    return sorted((lo, hi, n) for (lo, hi), n in rows.items())


def median_exponent_us(rows: list[tuple[int, int, int]]) -> int:
    total = sum(n for *_, n in rows)
    acc = 0
    for lo, _hi, n in rows:
        acc += n
        if 2 * acc >= total:
            return max(lo, 1).bit_length() - 1  # bucket [2^k, 2^(k+1)) -> k
    raise AssertionError("empty histogram")


def median_exponent_ours(slots: tuple[int, ...]) -> int:
    """Our slot k holds (2^(k-1), 2^k] ns, about (2^(k-11), 2^(k-10)] µs: lower edge k-11."""
    total = sum(slots)
    acc = 0
    for k, n in enumerate(slots):
        acc += n
        if 2 * acc >= total:
            return k - 11
    raise AssertionError("empty histogram")


@pytest.mark.kernel
def test_block_io_charged_to_the_submitting_cgroup() -> None:
    require_root()
    build_helper("sys_calls")
    dev, name = disk_of(TEST_DIR)
    path = os.path.join(TEST_DIR, f"kpod-test-bio-{os.getpid()}")
    with open(path, "wb") as f:
        f.write(os.urandom(FILE_PAGES * 4096))
        f.flush()
        os.fsync(f.fileno())
    biolat = shutil.which("biolatency")
    c = BlockIOCollector()
    c.start()
    stats_fd = int(libbpf.lib().bpf_enable_stats(libbpf.BPF_STATS_RUN_TIME))
    bl: subprocess.Popen[str] | None = None
    peer_failed: list[str] = []
    try:
        fds = c.program_fds()
        run0 = {n: prog_stats(fd) for n, fd in fds.items()}
        (state,) = c.signal_states()
        assert state.variant is not None, state.reason
        print(f"\nvariant {state.variant} ({(state.reason or 'first choice')[:120]})")
        with make_cgroups("io", "idle") as (io, idle):
            enable_io(os.path.dirname(io.path))
            p = spawn_in(io, [PYTHON, "-c", WORKLOAD, path, str(READS), str(WRITES),
                              str(FILE_PAGES)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            q = spawn_in(idle, [build_helper("sys_calls"), "idle"], stdout=subprocess.PIPE)
            assert p.stdin is not None and p.stdout is not None and q.stdout is not None
            assert p.stdout.readline() == b"ready\n"
            assert q.stdout.readline() == b"ready\n"
            if biolat:
                bl = subprocess.Popen(["stdbuf", "-oL", biolat, "-d", name, "-F", "60", "1"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                assert bl.stdout is not None and bl.stderr is not None
                if not bl.stdout.readline().startswith("Tracing"):
                    # the peer picks its tracepoints by release number: on Debian's
                    # 5.10 (5.11's block_rq_* backported) its program is refused
                    bl.wait(timeout=20)
                    peer_failed = bl.stderr.read().strip().splitlines()[-3:]
                    bl = None
            before = io_stat(io.path, dev)
            c.read_map("bio_stats")  # from zero
            p.stdin.write(b"g")
            p.stdin.flush()
            assert p.stdout.readline() == b"done\n"
            time.sleep(0.1)
            after = io_stat(io.path, dev)
            got: dict[tuple[int, int, int], KpodBioStats] = {}
            for k, v in c.read_map("bio_stats").items():
                key = KpodBioKey.from_buffer_copy(k)
                got[(int(key.cgroup_id), int(key.dev), int(key.op))] = \
                    KpodBioStats.from_buffer_copy(v)
            unowned = c.unowned()
            run1 = {n: prog_stats(fd) for n, fd in fds.items()}
            bl_text = ""
            if bl is not None:
                bl.send_signal(signal.SIGINT)
                bl_text, _ = bl.communicate(timeout=20)
            for proc in (p, q):
                proc.kill()
                proc.wait()
    finally:
        c.close()
        if stats_fd >= 0:
            os.close(stats_fd)
        if bl is not None and bl.poll() is None:
            bl.kill()
            bl.wait()
        os.unlink(path)
    mine = {(dv, op): st for (cg, dv, op), st in got.items() if cg == io.id}
    by_op = {op: sum(int(x) for x in st.latency.slots) for (dv, op), st in mine.items()
             if devno(dv) == dev}
    others = {cg: int(st.latency.count) for (cg, _dv, op), st in got.items()
              if cg != io.id and op == 0}
    if before is not None and after is not None:
        want = {0: after.get("rios", 0) - before.get("rios", 0),
                1: after.get("wios", 0) - before.get("wios", 0)}
        oracle = "io.stat"
    else:
        want = {0: READS, 1: WRITES}
        oracle = "the workload's own count (hybrid host: no io controller on cgroup v2)"
    print(f"\nblock I/O on {name} ({dev}): ours read={by_op.get(0)} write={by_op.get(1)}; "
          f"{oracle}: read={want[0]} write={want[1]}; unowned={unowned}; "
          f"reads of other cgroups: {others}")
    cost = {n.removeprefix("kpod_block_"): (run1[n][0] - run0[n][0]) / max(run1[n][1] - run0[n][1], 1)
            for n in run0}
    print("ns/event (whole machine's I/O in the window): "
          + ", ".join(f"{n} {v:.0f}" for n, v in sorted(cost.items())))
    assert want[0] >= READS and want[1] >= WRITES
    assert not any(cg == idle.id for cg, _, _ in got), "the idle cgroup made no I/O"
    require(biolat is not None, "biolatency (libbpf-tools) not installed")
    reads, writes = by_op.get(0, 0), by_op.get(1, 0)
    if peer_failed:
        # no second witness on this kernel: io.stat (or the workload's count) is the
        # oracle, exactly
        print(f"biolatency cannot run on this kernel ({' | '.join(peer_failed)}): "
              "no cross-check of losses or latencies")
        assert (reads, writes) == (want[0], want[1])
        return
    rows = biolatency_direct_reads(bl_text)
    theirs = sum(n for *_, n in rows)
    print(f"biolatency plain reads on {name} in the window: {theirs}")
    assert theirs, f"biolatency saw no plain reads on {name}:\n{bl_text}"
    if (reads, writes) != (want[0], want[1]):
        # Seen only on the shared build host (6.18, a virtio disk every helper's VM
        # writes to): now and then block_rq_complete does not fire for a request. That
        # loss is the tracepoint's, not ours, if biolatency, fed by the same
        # tracepoints, missed reads in the same window; it stays under 1 %.
        assert reads <= want[0] and writes <= want[1]
        assert want[0] - reads <= want[0] // 100 and want[1] - writes <= want[1] // 100
        assert theirs <= reads + sum(others.values()), \
            "we lost completions that biolatency saw: the loss is ours"
    read_slots = tuple(int(x) for x in mine[next(d for d, op in mine if op == 0), 0].latency.slots)
    ours_med, theirs_med = median_exponent_ours(read_slots), median_exponent_us(rows)
    print(f"biolatency reads on {name}: {theirs} (ours: {by_op[0]} of this cgroup); "
          f"median bucket ~2^{theirs_med} us (ours ~2^{ours_med} us)")
    assert theirs >= by_op[0]
    assert abs(ours_med - theirs_med) <= 1


@pytest.mark.kernel
def test_forced_old_variant_is_refused_with_its_reason_on_newer_kernels() -> None:
    """On 5.11+ the <= 5.10 programs read a tracepoint argument that does not exist:
    the verifier must refuse them (else they would read garbage), leaving the forced
    signal dark with the verifier's reason, not falling back silently."""
    require_root()
    if tracepoint_args("block_rq_issue") > 1:
        pytest.skip(f"kernel {os.uname().release} has the two-argument block_rq_* "
                    "tracepoints of <= 5.10: the old variant is this kernel's own")
    opts = LoadOptions(signals=(SIGNAL,), forced_variants={"blockio": "tp_btf_5_10"})
    try:
        obj = BpfObject("bio", opts=opts).load()
    except BpfError as exc:  # nothing of the object loads: the verifier's reason is here
        assert "doesn't have 2-th argument" in str(exc), exc
        return
    try:
        obj.attach()
        (state,) = obj.settle_signals()
        assert state.variant is None
        assert "2-th argument" in state.failures["tp_btf_5_10"], state.failures
        assert state.failures["tp_btf"].startswith("not tried"), state.failures
        assert not obj.attached
    finally:
        obj.close()

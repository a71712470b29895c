"""io.stat on a real block device, against the bytes and operations we issued.

Pure cgroup v2 only (the kernel VMs: /dev/vda, an ext4 scratch disk, mounted at
$VM_SCRATCH). The test writes and syncs a file there from outside the test cgroup, so
the blocks exist; a helper in a test cgroup with the io controller then overwrites
COUNT blocks with O_DIRECT and reads them back, one aligned bio per call. The cgroup's
io.stat row for that disk must say exactly COUNT*BLOCK bytes and COUNT operations each
way (the journal's metadata writes belong to jbd2, not to us), and the diskio
collector must export exactly that under the disk's name.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from kpodmetrics.collectors.files.io_stat import DiskIOCollector
from tests.conftest import require, require_root
from tests.kernel.cgroup_util import build_helper, make_cgroups, require_v2, spawn_in
from tests.kernel.test_cgfiles_real import collect, ref_of

pytestmark = pytest.mark.kernel
BLOCK = 64 << 10
COUNT = 32


def scratch_disk() -> tuple[str, str, str]:
    """(directory, "major:minor" of its whole disk, disk name) of the scratch filesystem."""
    scratch = os.environ.get("VM_SCRATCH", "/var/tmp")
    st = os.stat(scratch)
    sysdev = f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    require(os.path.exists(sysdev), f"{scratch} is not on a block device (a VM's /dev/vda)")
    real = os.path.realpath(sysdev)
    if os.path.exists(os.path.join(real, "partition")):
        real = os.path.dirname(real)  # io.stat is per disk
    with open(os.path.join(real, "dev")) as fh:
        devno = fh.read().strip()
    return scratch, devno, os.path.basename(real)


def io_stat_row(path: str, devno: str) -> dict[str, int]:
    with open(os.path.join(path, "io.stat")) as fh:
        for line in fh:
            dev, *pairs = line.split()
            if dev == devno:
                return {k: int(v) for k, v in (p.split("=", 1) for p in pairs)}
    return {}


def test_io_stat_counts_exactly_the_direct_io_we_did() -> None:
    require_root()
    require_v2("io")
    scratch, devno, disk = scratch_disk()
    exe = build_helper("direct_io")
    path = os.path.join(scratch, f"kpod-test-io-{os.getpid()}")
    try:
        with open(path, "wb") as fh:
            fh.write(os.urandom(BLOCK * COUNT))
            fh.flush()
            os.fsync(fh.fileno())
        with make_cgroups("io", controllers=("io",)) as (cg,):
            p = spawn_in(cg, [exe, path, str(BLOCK), str(COUNT)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            assert p.stdin is not None and p.stdout is not None
            assert p.stdout.readline() == b"ready\n"
            before = io_stat_row(cg.path, devno)
            p.stdin.write(b"g")
            p.stdin.flush()
            assert p.stdout.readline() == b"done\n"
            assert p.wait(timeout=60) == 0
            row = io_stat_row(cg.path, devno)
            got, errors = collect(DiskIOCollector(), [ref_of(cg)])
    finally:
        os.unlink(path)
    print(f"\nio.stat {devno} ({disk}) before={before} after={row}")
    delta = {k: row.get(k, 0) - before.get(k, 0) for k in ("rbytes", "wbytes", "rios", "wios")}
    assert delta == {"rbytes": BLOCK * COUNT, "wbytes": BLOCK * COUNT,
                     "rios": COUNT, "wios": COUNT}
    assert errors == {}
    dev = (("device", disk),)
    assert got[("kpod_disk_read_bytes_total", cg.id, dev)] == row["rbytes"]
    assert got[("kpod_disk_written_bytes_total", cg.id, dev)] == row["wbytes"]
    assert got[("kpod_disk_reads_total", cg.id, dev)] == row["rios"]
    assert got[("kpod_disk_writes_total", cg.id, dev)] == row["wios"]

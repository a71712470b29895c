"""Decoding a batch read of bio_stats, with bytes packed by hand from the C layout."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from kpodmetrics.bpf.maps import MapRead
from kpodmetrics.collectors.ebpf.block_io import LATENCY, decoder, devno
from kpodmetrics.collectors.files.support.blockdev import BlockDevices

# struct kpod_bio_key { u64 cgroup_id; u32 dev; u32 op; }
KEY = struct.Struct("<QII")
# struct kpod_bio_stats { struct kpod_hist { u64 slots[32]; u64 sum; u64 count; } latency; }
VALUE = struct.Struct("<34Q")


def entry(cg: int, major: int, minor: int, op: int, slots: dict[int, int],
          total: int) -> tuple[bytes, bytes]:
    s = [0] * 32
    for k, n in slots.items():
        s[k] = n
    return KEY.pack(cg, major << 20 | minor, op), VALUE.pack(*s, total, sum(s))


def sysfs(tmp: Path, devs: dict[str, str]) -> str:
    for num, name in devs.items():
        d = tmp / "dev" / "block" / num
        d.mkdir(parents=True)
        (d / "uevent").write_text(f"MAJOR={num.split(':')[0]}\nDEVNAME={name}\n")
    return str(tmp)


def test_kernel_dev_t_is_rendered_like_io_stat() -> None:
    assert devno(259 << 20 | 3) == "259:3"
    assert devno(8 << 20 | 16) == "8:16"
    assert os.major(os.makedev(8, 16)) == 8  # the userspace encoding differs; ours is MKDEV


def test_labels_from_sysfs_and_req_op(tmp_path: Path) -> None:
    devices = BlockDevices(sysfs(tmp_path, {"254:0": "vda"}))
    rows = [entry(111, 254, 0, 0, {15: 3}, 90000), entry(111, 254, 0, 1, {16: 1}, 50000),
            entry(222, 7, 1, 2, {20: 2}, 2_000_000), entry(333, 254, 0, 34, {1: 1}, 2),
            entry(444, 254, 0, 0, {}, 0)]
    read = MapRead(b"".join(k for k, _ in rows), b"".join(v for _, v in rows), len(rows),
                   KEY.size, VALUE.size)
    out = {(s.cgroup_id, s.labels): s for s in decoder(devices).decode(read).samples}
    assert set(out) == {
        (111, (("device", "vda"), ("op", "read"))),
        (111, (("device", "vda"), ("op", "write"))),
        (222, (("device", "7:1"), ("op", "flush"))),  # unknown to sysfs: the number
        (333, (("device", "vda"), ("op", "other"))),  # REQ_OP_DRV_IN
    }, "an empty histogram yields nothing"
    r = out[(111, (("device", "vda"), ("op", "read")))]
    assert (r.family.name, r.count, r.total, r.slots[15]) == (LATENCY.name, 3, 90000, 3)


def test_an_unknown_number_is_looked_up_again_only_every_few_cycles(tmp_path: Path) -> None:
    root = sysfs(tmp_path, {"254:0": "vda"})
    devices = BlockDevices(root)
    looked: list[str] = []
    real = devices._lookup
    devices._lookup = lambda d: (looked.append(d), real(d))[1]  # type: ignore[method-assign]
    for _ in range(3):  # one cycle, many entries of the same unknown disk
        assert devices.name("8:16") == "8:16"
    assert looked == ["8:16"]
    for _ in range(3):
        devices.new_cycle()
        assert devices.name("8:16") == "8:16"
    assert looked == ["8:16"]
    sysfs(tmp_path, {"8:16": "sdb"})  # the disk appears: named at the next retry
    devices.new_cycle()
    assert devices.name("8:16") == "sdb" and looked == ["8:16", "8:16"]
    devices.new_cycle()
    assert devices.name("8:16") == "sdb" and len(looked) == 2  # cached from now on

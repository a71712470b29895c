"""Disk I/O per cgroup from `io.stat` (needs the io controller enabled for the cgroup).

io.stat lists only devices the cgroup has touched, with the kernel's running totals;
they are handed over as CUMULATIVE so the store adds differences and treats a drop
(the cgroup was recreated under the same id) as a reset. dbytes/dios (discards,
4.19+) and any later keys are ignored.
"""

from __future__ import annotations

from kpodmetrics import families
from kpodmetrics.collectors.base import CollectContext
from kpodmetrics.collectors.files.support.blockdev import BlockDevices
from kpodmetrics.collectors.files.support.formats import parse_io_stat
from kpodmetrics.collectors.files.support.percgroup import PerCgroupCollector
from kpodmetrics.config import Settings
from kpodmetrics.families import Family, FamilyType
from kpodmetrics.pods.owner import CgroupRef
from kpodmetrics.samples import Kind, Sample

NAME = "diskio"
READ_BYTES = Family("kpod_disk_read_bytes_total", FamilyType.COUNTER,
                    "Bytes read from the block device by the cgroup (io.stat rbytes).", "By",
                    ("device",))
WRITTEN_BYTES = Family("kpod_disk_written_bytes_total", FamilyType.COUNTER,
                       "Bytes written to the block device by the cgroup (io.stat wbytes).", "By",
                       ("device",))
READS = Family("kpod_disk_reads_total", FamilyType.COUNTER,
               "Read operations issued to the block device (io.stat rios).", "", ("device",))
WRITES = Family("kpod_disk_writes_total", FamilyType.COUNTER,
                "Write operations issued to the block device (io.stat wios).", "", ("device",))
FAMILIES = families.register(READ_BYTES, WRITTEN_BYTES, READS, WRITES)
_KEYS = (
    ("rbytes", READ_BYTES),
    ("wbytes", WRITTEN_BYTES),
    ("rios", READS),
    ("wios", WRITES),
)


class DiskIOCollector(PerCgroupCollector):
    name = NAME
    families = FAMILIES
    files = ("io.stat",)

    def __init__(self, sys_root: str = "/sys") -> None:
        super().__init__()
        self.devices = BlockDevices(sys_root)

    def begin_cycle(self) -> None:
        self.devices.new_cycle()

    def samples_for(
        self, ref: CgroupRef, contents: dict[str, bytes], ctx: CollectContext
    ) -> list[Sample]:
        data = contents.get("io.stat")
        if data is None:
            return []
        parsed = parse_io_stat(data)
        if parsed.malformed:
            ctx.count_error(self.name, parsed.malformed)
        out = []
        for devno, pairs in parsed.rows.items():
            labels = (("device", self.devices.name(devno)),)
            for key, family in _KEYS:
                if key in pairs:
                    out.append(Sample(family, ref.cgroup_id, float(pairs[key]),
                                      Kind.CUMULATIVE, labels))
        return out


def create(settings: Settings) -> DiskIOCollector:
    return DiskIOCollector()

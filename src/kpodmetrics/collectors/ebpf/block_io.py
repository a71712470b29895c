"""Block I/O latency per cgroup, disk and operation (ebpf/bio.bpf.c).

The kernel side charges each request to the cgroup the block layer charges it to (the
blkcg of its bio), so a pod's histogram holds the latency of its own I/O even when a
kworker issues it or an interrupt completes it. Latency runs from the issue to the
device to the completion: the device's time plus the driver's, not the scheduler
queue (that wait shows as io pressure). Devices are labelled like io.stat's (the
sysfs name of the whole disk); operations by their REQ_OP name.
"""

from __future__ import annotations

from collections.abc import Iterable

from kpodmetrics import families
from kpodmetrics.bpf.mapspec import Hist, MapDecoder, MapSpec
from kpodmetrics.bpf.structs import (
    KPOD_BIO_NO_OWNER,
    KPOD_BIO_NO_START,
    KPOD_HEALTH_BIO_INFLIGHT,
    KPOD_HEALTH_BIO_STATS,
    KPOD_HEALTH_BIO_SUBMITTER,
    KpodBioKey,
    KpodBioStats,
)
from kpodmetrics.bpf.variants import Signal, Variant
from kpodmetrics.collectors.base import CollectContext
from kpodmetrics.collectors.ebpf.base import BpfCollectorBase
from kpodmetrics.collectors.files.support.blockdev import BlockDevices
from kpodmetrics.config import Settings
from kpodmetrics.families import Family, FamilyType
from kpodmetrics.samples import HistogramSample, Sample

NS = 1e-9
# le = 2^k ns for k = 12, 14, ..., 30: 4.1 us ... 1.07 s; every bound is exact.
LATENCY_EXPONENTS = tuple(range(12, 31, 2))

LATENCY = Family(
    "kpod_disk_io_latency_seconds", FamilyType.HISTOGRAM,
    "Block I/O requests from issue to the device to completion, charged to the cgroup "
    "the block layer charges the I/O to (the bio's blkcg)",
    unit="s", label_names=("device", "op"), bucket_exponents=LATENCY_EXPONENTS, scale=NS,
)
families.register(LATENCY)

STATS = MapSpec("bio_stats", KpodBioStats, key=KpodBioKey,
                key_labels=(("dev", "device"), ("op", "op")), fields=(Hist("latency", LATENCY),))
"""bio_stats: (cgroup id, disk dev_t, REQ_OP) -> struct kpod_bio_stats."""

# REQ_OP_* values (include/linux/blk_types.h, stable since 4.10); others are "other".
OPS = {0: "read", 1: "write", 2: "flush", 3: "discard", 5: "secure_erase", 9: "write_zeroes"}


def devno(dev: int) -> str:
    """The kernel's dev_t (major << 20 | minor) as io.stat writes it, `MAJ:MIN`."""
    return f"{dev >> 20}:{dev & 0xFFFFF}"


# The <= 5.10 variant comes first on purpose: its programs read an argument that the
# 5.11+ tracepoints lack, so the verifier refuses them there, whereas the 5.11+
# programs would pass the verifier on 5.10 too and read the request_queue argument
# as if it were the request.
SIGNAL = Signal("blockio", families=(LATENCY,), variants=(
    Variant("tp_btf_5_10", ("kpod_block_getrq_q", "kpod_block_rq_issue_q",
                            "kpod_block_rq_complete")),
    Variant("tp_btf", ("kpod_block_getrq", "kpod_block_rq_issue", "kpod_block_rq_complete")),
))


class BlockIOCollector(BpfCollectorBase):
    name = "blockio"
    object_name = "bio"
    health_map = "bio_health"
    metric_maps = {STATS.map: KPOD_HEALTH_BIO_STATS, "bio_inflight": KPOD_HEALTH_BIO_INFLIGHT,
                   "bio_submitter": KPOD_HEALTH_BIO_SUBMITTER}
    families = STATS.families
    signals = (SIGNAL,)

    def __init__(self, *, legacy_maps: bool = False, sys_root: str = "/sys",
                 variants: dict[str, str] | None = None) -> None:
        super().__init__(legacy_maps=legacy_maps, variants=variants)
        self.devices = BlockDevices(sys_root)
        self.decoder = decoder(self.devices)

    def collect(self, ctx: CollectContext) -> Iterable[Sample | HistogramSample]:
        self.devices.new_cycle()
        return self.decoder.decode(self.read_map(STATS.map)).samples

    def unowned(self) -> dict[str, int]:
        """Completions charged to nobody since start: `no_owner` (no bio: flushes) and
        `no_start` (issued before the programs attached)."""
        assert self.obj is not None
        raw = self.obj.map("bio_unowned").read_all()
        by_idx = {int.from_bytes(k, "little"): int.from_bytes(v[:8], "little")
                  for k, v in raw.items()}
        return {"no_owner": by_idx.get(KPOD_BIO_NO_OWNER, 0),
                "no_start": by_idx.get(KPOD_BIO_NO_START, 0)}


def decoder(devices: BlockDevices) -> MapDecoder:
    """bio_stats decoder naming disks like io.stat and operations by REQ_OP name."""
    return MapDecoder(STATS, label_of={"device": lambda dev: devices.name(devno(dev)),
                                       "op": lambda op: OPS.get(op, "other")})


def create(settings: Settings) -> BlockIOCollector:
    return BlockIOCollector(legacy_maps=settings.legacy_maps)

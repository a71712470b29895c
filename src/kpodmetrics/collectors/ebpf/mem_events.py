"""OOM kills and major page faults per cgroup (ebpf/mem.bpf.c).

OOM kills are charged to the victim: tp_btf/mark_victim where the tracepoint passes
the task (6.9+), else mark_oom_victim() (the function that fires it) by fentry or
kprobe. Major faults
come from a perf-event program on the software event PERF_COUNT_SW_PAGE_FAULTS_MAJ,
which needs one perf event per CPU opened here with perf_event_open(2); kprobes are
not needed (many hardened kernels have none). If the perf events cannot be opened,
only the fault counter is lost and the program's status says why.
"""

from __future__ import annotations

import ctypes
import logging
import os
import struct
from collections.abc import Iterable

from kpodmetrics import families, syscalls
from kpodmetrics.bpf.errors import BpfError
from kpodmetrics.bpf.loader import BpfObject
from kpodmetrics.bpf.mapspec import Count, MapDecoder, MapSpec
from kpodmetrics.bpf.structs import KPOD_HEALTH_MEM_STATS, KpodMemStats
from kpodmetrics.bpf.variants import Signal, Variant
from kpodmetrics.collectors.base import CollectContext
from kpodmetrics.collectors.ebpf.base import BpfCollectorBase
from kpodmetrics.config import Settings
from kpodmetrics.families import Family, FamilyType
from kpodmetrics.samples import HistogramSample, Sample

_log = logging.getLogger(__name__)

OOM_KILLS = Family(
    "kpod_mem_oom_kills_total", FamilyType.COUNTER,
    "Processes killed by the OOM killer, charged to the victim's cgroup",
)
MAJOR_FAULTS = Family(
    "kpod_mem_major_page_faults_total", FamilyType.COUNTER,
    "Major page faults (page read from storage), charged to the faulting task's cgroup",
)
families.register(OOM_KILLS, MAJOR_FAULTS)

STATS = MapSpec("mem_stats", KpodMemStats, fields=(
    Count("oom_kills", OOM_KILLS),
    Count("major_faults", MAJOR_FAULTS),
))
"""mem_stats: cgroup id -> struct kpod_mem_stats."""

FAULT_PROG = "kpod_major_fault"

PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_PAGE_FAULTS_MAJ = 6
PERF_FLAG_FD_CLOEXEC = 1 << 3
_ATTR_SIZE = 128  # PERF_ATTR_SIZE_VER7; the kernel takes any known size, rest zero
_ATTR_DISABLED = 1 << 0  # libbpf enables the event once the program is attached

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def online_cpus(path: str = "/sys/devices/system/cpu/online") -> list[int]:
    """CPUs listed as online ("0-3,6")."""
    with open(path) as fh:
        text = fh.read().strip()
    cpus: list[int] = []
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def open_major_fault_event(cpu: int) -> int:
    """perf_event_open(software major faults, every event, all tasks, one CPU) -> fd."""
    attr = bytearray(_ATTR_SIZE)
    # type u32, size u32, config u64, sample_period u64, sample_type u64, read_format u64,
    # then the flag bit field (disabled is bit 0)
    struct.pack_into("<IIQQQQQ", attr, 0, PERF_TYPE_SOFTWARE, _ATTR_SIZE,
                     PERF_COUNT_SW_PAGE_FAULTS_MAJ, 1, 0, 0, _ATTR_DISABLED)
    buf = (ctypes.c_char * _ATTR_SIZE).from_buffer(attr)
    nr = syscalls.table()["perf_event_open"]
    fd = int(_libc.syscall(ctypes.c_long(nr), buf, ctypes.c_int(-1), ctypes.c_int(cpu),
                           ctypes.c_int(-1), ctypes.c_ulong(PERF_FLAG_FD_CLOEXEC)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"perf_event_open(major faults, cpu {cpu}): {os.strerror(err)}")
    return fd


class MemCollector(BpfCollectorBase):
    name = "mem"
    object_name = "mem"
    health_map = "mem_health"
    metric_maps = {STATS.map: KPOD_HEALTH_MEM_STATS}
    families = STATS.families
    signals = (
        Signal("oom_kills", families=(OOM_KILLS,), variants=(
            Variant("tp_btf", ("kpod_mark_victim",)),
            Variant("fentry", ("kpod_mark_oom_victim",)),
            Variant("kprobe", ("kpod_mark_oom_victim_kprobe",)),
        )),
        Signal("major_faults", families=(MAJOR_FAULTS,), variants=(
            Variant("perf_event", (FAULT_PROG,)),
        )),
    )

    def __init__(self, **kw: object) -> None:
        """Keywords of BpfCollectorBase (legacy_maps, variants: signal -> forced variant)."""
        super().__init__(**kw)  # type: ignore[arg-type]
        self.decoder = MapDecoder(STATS)

    def attach(self, obj: BpfObject) -> None:
        """Tracepoints as usual, then the fault program on one perf event per CPU.

        Once attached, libbpf owns each perf fd and closes it when the link is
        destroyed (BpfObject.close); we close only fds whose attach failed."""
        obj.attach()
        st = obj.programs.get(FAULT_PROG)
        if st is None or not st.loaded:
            return
        reasons: list[str] = []
        for cpu in online_cpus():
            try:
                fd = open_major_fault_event(cpu)
            except OSError as exc:
                reasons.append(str(exc))
                continue
            try:
                obj.attach_perf_event(FAULT_PROG, fd)
            except BpfError as exc:
                os.close(fd)
                reasons.append(str(exc))
        if reasons:
            # a CPU without the event would undercount silently: all or nothing
            st.reason = "; ".join(reasons[:2])
            if st.attached:
                st.reason += " (fault counts would miss those CPUs; treat as unreliable)"
            _log.warning("mem: major fault events: %s", st.reason)

    def collect(self, ctx: CollectContext) -> Iterable[Sample | HistogramSample]:
        return self.decoder.decode(self.read_map(STATS.map)).samples


def create(settings: Settings) -> MemCollector:
    return MemCollector(legacy_maps=settings.legacy_maps)

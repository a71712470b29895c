"""Per-syscall count, errors and latency per cgroup (ebpf/syscall.bpf.c).

The kernel measures only the syscalls marked in its filter map. The filter is
filled from the configured names before the programs attach and read back: a
collector whose filter does not hold exactly the configured numbers refuses to
start, because an unfilled filter measures nothing while looking healthy (the
failure of the project this one replaces). An empty name list switches the
collector off cleanly: nothing is loaded and no series are produced.

Two variants keep the per-thread start time: task-local storage (freed with its
task, so exits and killed threads leave nothing behind; 5.13+) and a preallocated
HASH keyed by thread id for older kernels (5.10 refuses hash maps allocated at run
time in tracing programs). ebpf/core_fixes.bpf.h names the commits.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from kpodmetrics import families, syscalls
from kpodmetrics.bpf.errors import BpfError
from kpodmetrics.bpf.loader import BpfObject
from kpodmetrics.bpf.mapspec import Count, Hist, MapDecoder, MapSpec
from kpodmetrics.bpf.structs import (
    KPOD_HEALTH_SYS_START,
    KPOD_HEALTH_SYS_STATS,
    KPOD_SYS_NR_MAX,
    KpodSysKey,
    KpodSysStats,
)
from kpodmetrics.bpf.variants import Signal, Variant
from kpodmetrics.collectors.base import CollectContext, CollectorUnavailable
from kpodmetrics.collectors.ebpf.base import BpfCollectorBase
from kpodmetrics.config import Settings
from kpodmetrics.families import Family, FamilyType
from kpodmetrics.samples import HistogramSample, Sample

_log = logging.getLogger(__name__)

NS = 1e-9
# le = 2^k ns for k = 10, 12, ..., 30: 1.02 us ... 1.07 s; every bound is exact.
LATENCY_EXPONENTS = tuple(range(10, 31, 2))

COUNT = Family(
    "kpod_syscall_count_total", FamilyType.COUNTER,
    "Completed calls of each tracked syscall, charged to the calling task's cgroup",
    label_names=("syscall",),
)
ERRORS = Family(
    "kpod_syscall_errors_total", FamilyType.COUNTER,
    "Calls of each tracked syscall that returned an error (-4095..-1)",
    label_names=("syscall",),
)
LATENCY = Family(
    "kpod_syscall_latency_seconds", FamilyType.HISTOGRAM,
    "Time from syscall entry to exit, per tracked syscall",
    unit="s", label_names=("syscall",), bucket_exponents=LATENCY_EXPONENTS, scale=NS,
)
families.register(COUNT, ERRORS, LATENCY)

STATS = MapSpec(
    "sys_stats", KpodSysStats, key=KpodSysKey, key_labels=(("nr", "syscall"),),
    fields=(
        Hist("latency", LATENCY, count=COUNT),  # every completed call is one latency sample
        Count("errors", ERRORS),
    ))
"""sys_stats: (cgroup id, syscall nr) -> struct kpod_sys_stats."""


class FilterNotLoaded(CollectorUnavailable):
    """The kernel filter does not hold the configured syscalls."""


class SyscallCollector(BpfCollectorBase):
    name = "syscall"
    object_name = "syscall"
    health_map = "sys_health"
    metric_maps = {STATS.map: KPOD_HEALTH_SYS_STATS, "sys_start": KPOD_HEALTH_SYS_START}
    families = STATS.families
    signals = (
        Signal("syscalls", families=STATS.families, variants=(
            Variant("task_storage", ("kpod_sys_enter", "kpod_sys_exit")),
            Variant("hash", ("kpod_sys_enter_hash", "kpod_sys_exit_hash")),
        )),
    )

    def __init__(self, tracked: Mapping[str, int], *, legacy_maps: bool = False,
                 max_entries: Mapping[str, int] | None = None,
                 variants: Mapping[str, str] | None = None) -> None:
        """`tracked`: name -> number for this architecture (syscalls.resolve);
        `variants`: signal -> variant to force (tests, diagnosis)."""
        super().__init__(legacy_maps=legacy_maps, max_entries=max_entries, variants=variants)
        bad = {n: nr for n, nr in tracked.items() if not 0 <= nr < KPOD_SYS_NR_MAX}
        if bad:
            raise CollectorUnavailable(f"syscall numbers outside the filter: {bad}")
        self.tracked = dict(tracked)
        self.names = {nr: n for n, nr in tracked.items()}
        # entries of numbers outside the filter cannot happen with a verified filter
        self.decoder = MapDecoder(STATS, label_of={"syscall": self.names.get})

    # -- life cycle ----------------------------------------------------------------

    def start(self) -> None:
        if not self.tracked:
            _log.info("syscall collector: no syscalls configured (KPOD_SYSCALLS=none); "
                      "nothing is loaded")
            return
        super().start()

    def attach(self, obj: BpfObject) -> None:
        """Fill and verify the filter, then attach: never measure with an empty filter."""
        try:
            self.fill_filter(obj)
            self.verify_filter(obj)
        except (BpfError, FilterNotLoaded) as exc:
            obj.close()
            self.obj = None
            raise CollectorUnavailable(f"syscall filter: {exc}") from exc
        obj.attach()

    def fill_filter(self, obj: BpfObject) -> None:
        flt = obj.map("sys_filter")
        for nr in self.names:
            flt.update(nr.to_bytes(4, "little"), b"\x01")

    def verify_filter(self, obj: BpfObject) -> None:
        raw = obj.map("sys_filter").read_all()
        on = {int.from_bytes(k, "little") for k, v in raw.items() if v[0]}
        if on != set(self.names):
            missing = sorted(self.names[nr] for nr in set(self.names) - on)
            extra = sorted(on - set(self.names))
            raise FilterNotLoaded(
                f"kernel filter differs from the configuration (missing: {missing or '-'}; "
                f"unexpected numbers: {extra or '-'})"
            )

    # -- reading -------------------------------------------------------------------

    def collect(self, ctx: CollectContext) -> Iterable[Sample | HistogramSample]:
        if self.obj is None:
            return []
        return self.decoder.decode(self.read_map(STATS.map)).samples


def create(settings: Settings) -> SyscallCollector:
    """Names were validated with the settings; resolving again here cannot fail."""
    tracked = syscalls.for_settings(settings.syscalls)
    return SyscallCollector(tracked, legacy_maps=settings.legacy_maps)

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

32-bit (ia32) tasks on x86_64 call through the i386 table, whose numbers mean other
calls (3 is read there, close on x86_64). The filter tracks each configured name in
both tables (a bit per ABI), the program keys ia32 calls as KPOD_SYS_NR_IA32 + their
number, and they are exported under the same `syscall` name as native calls: a
cgroup's `read` series counts the reads of its 64-bit and 32-bit tasks together.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Mapping, Sequence

from kpodmetrics import families, syscalls
from kpodmetrics.bpf.errors import BpfError
from kpodmetrics.bpf.loader import BpfObject
from kpodmetrics.bpf.maps import BpfMap
from kpodmetrics.bpf.mapspec import Count, Hist, MapDecoder, MapSpec
from kpodmetrics.bpf.structs import (
    KPOD_HEALTH_SYS_START,
    KPOD_HEALTH_SYS_STATS,
    KPOD_SYS_FILTER_IA32,
    KPOD_SYS_FILTER_NATIVE,
    KPOD_SYS_NR_IA32,
    KPOD_SYS_NR_MAX,
    KpodSysKey,
    KpodSysStats,
)
from kpodmetrics.bpf.variants import Signal, Variant
from kpodmetrics.collectors.base import CollectContext, CollectorUnavailable, MapHealth
from kpodmetrics.collectors.ebpf.base import BpfCollectorBase
from kpodmetrics.config import Settings
from kpodmetrics.families import Family, FamilyType
from kpodmetrics.samples import HistogramSample, Labels, Sample

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
"""sys_stats: (cgroup id, syscall nr) -> struct kpod_sys_stats; nr is the native number,
or KPOD_SYS_NR_IA32 + the ia32 number of a 32-bit call (named by the ia32 table)."""


_KNOWN_BITS = KPOD_SYS_FILTER_NATIVE | KPOD_SYS_FILTER_IA32


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
            Variant("task_storage", ("kpod_sys_enter", "kpod_sys_exit"),
                    maps=("sys_task_start",)),
            Variant("hash", ("kpod_sys_enter_hash", "kpod_sys_exit_hash"), maps=("sys_start",)),
        )),
    )

    def __init__(self, tracked: Mapping[str, int], *, compat: Mapping[str, int] | None = None,
                 legacy_maps: bool = False,
                 max_entries: Mapping[str, int] | None = None,
                 variants: Mapping[str, str] | None = None) -> None:
        """`tracked`: name -> number for this architecture (syscalls.resolve);
        `compat`: name -> number in the ia32 table, for the same names measured in
        32-bit tasks (default: syscalls.compat_for(tracked); {}: not measured);
        `variants`: signal -> variant to force (tests, diagnosis)."""
        super().__init__(legacy_maps=legacy_maps, max_entries=max_entries, variants=variants)
        if compat is None:
            compat = syscalls.compat_for(tracked) if tracked else {}
        bad = {n: nr for n, nr in (*tracked.items(), *compat.items())
               if not 0 <= nr < KPOD_SYS_NR_MAX}
        if bad:
            raise CollectorUnavailable(f"syscall numbers outside the filter: {bad}")
        self.tracked = dict(tracked)
        self.compat = dict(compat)
        # stats key nr -> name: native numbers, and ia32 ones above KPOD_SYS_NR_IA32
        self.names = {nr: n for n, nr in tracked.items()}
        self.names.update({KPOD_SYS_NR_IA32 + nr: n for n, nr in compat.items()})
        # filter index -> KPOD_SYS_FILTER_* bits
        self.filter: dict[int, int] = {}
        for nr in tracked.values():
            self.filter[nr] = self.filter.get(nr, 0) | KPOD_SYS_FILTER_NATIVE
        for nr in compat.values():
            self.filter[nr] = self.filter.get(nr, 0) | KPOD_SYS_FILTER_IA32
        # entries of numbers outside the filter cannot happen with a verified filter
        self.decoder = MapDecoder(STATS, label_of={"syscall": self.names.get})
        self._reaped = 0

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
        for nr, bits in self.filter.items():
            flt.update(nr.to_bytes(4, "little"), bytes([bits]))

    def verify_filter(self, obj: BpfObject) -> None:
        raw = obj.map("sys_filter").read_all()
        got = {int.from_bytes(k, "little"): v[0] for k, v in raw.items() if v[0]}
        if got != self.filter:
            # as stats numbers, so that each side is named by its own table
            want = self._keys(self.filter)
            on = self._keys(got)
            missing = sorted(self.names[k] + (" (ia32)" if k >= KPOD_SYS_NR_IA32 else "")
                             for k in want - on)
            extra = sorted(on - want)
            odd = sorted(nr for nr, bits in got.items() if bits & ~_KNOWN_BITS)
            raise FilterNotLoaded(
                f"kernel filter differs from the configuration (missing: {missing or '-'}; "
                f"unexpected numbers: {extra or '-'}"
                + (f"; unknown ABI bits at {odd})" if odd else ")")
            )

    @staticmethod
    def _keys(flt: Mapping[int, int]) -> set[int]:
        """Filter entries as stats key numbers (ia32 ones above KPOD_SYS_NR_IA32)."""
        out = set()
        for nr, bits in flt.items():
            if bits & KPOD_SYS_FILTER_NATIVE:
                out.add(nr)
            if bits & KPOD_SYS_FILTER_IA32:
                out.add(KPOD_SYS_NR_IA32 + nr)
        return out

    # -- reading -------------------------------------------------------------------

    def collect(self, ctx: CollectContext) -> Iterable[Sample | HistogramSample]:
        if self.obj is None:
            return []
        if self._uses_hash_start():
            self._reaped += reap_dead_threads(self.obj.map("sys_start"), ctx.proc_root)
        samples = self.decoder.decode(self.read_map(STATS.map)).samples
        return merge_abis(samples) if self.compat else samples

    def _uses_hash_start(self) -> bool:
        return any(st.variant == "hash" for st in self.signal_states())

    def health_maps(self) -> Mapping[str, int]:
        """The start slot's health is that of the start map in use: only the chosen
        variant's map exists (Variant.maps)."""
        if self._uses_hash_start():
            return self.metric_maps
        return {("sys_task_start" if m == "sys_start" else m): i
                for m, i in self.metric_maps.items()}

    def map_health(self) -> Sequence[MapHealth]:
        return [dataclasses.replace(h, reaped=self._reaped) if h.map == "sys_start" else h
                for h in super().map_health()]


def reap_dead_threads(start_map: BpfMap, proc_root: str = "/proc") -> int:
    """Delete sys_start entries (key pid_tgid) of threads that no longer exist.

    The hash variant (kernels without task storage in tracing programs) frees an entry
    when its call returns; a thread that dies inside a tracked call (killed while
    parked in read or futex) never returns, and its entry would stay until the map is
    full and every tracked call goes unmeasured. Task storage has no such leak. A tid
    reused by a new thread keeps the old entry until that thread makes a tracked call,
    which overwrites it. Returns the number deleted."""
    read = start_map.read_all()
    reaped = 0
    for key, _ in read.items():
        pid_tgid = int.from_bytes(key, "little")
        tgid, tid = pid_tgid >> 32, pid_tgid & 0xFFFFFFFF
        if not os.path.exists(f"{proc_root}/{tgid}/task/{tid}") and start_map.delete(key):
            reaped += 1
    return reaped


def merge_abis(samples: Sequence[Sample | HistogramSample]) -> list[Sample | HistogramSample]:
    """One sample per (family, cgroup, labels): a cgroup's native and ia32 entries of
    the same name (two keys of sys_stats) become one, their counts and slots added."""
    out: dict[tuple[str, int, Labels], Sample | HistogramSample] = {}
    for s in samples:
        k = (s.family.name, s.cgroup_id, s.labels)
        prev = out.get(k)
        if prev is None:
            out[k] = s
        elif isinstance(prev, HistogramSample) and isinstance(s, HistogramSample):
            slots = tuple(a + b for a, b in zip(prev.slots, s.slots, strict=True))
            out[k] = HistogramSample(s.family, s.cgroup_id, slots, prev.total + s.total,
                                     labels=s.labels)
        elif isinstance(prev, Sample) and isinstance(s, Sample):
            out[k] = Sample(s.family, s.cgroup_id, prev.value + s.value, kind=s.kind,
                            labels=s.labels, source=s.source)
    return list(out.values())


def create(settings: Settings) -> SyscallCollector:
    """Names were validated with the settings; resolving again here cannot fail."""
    tracked = syscalls.for_settings(settings.syscalls)
    return SyscallCollector(tracked, legacy_maps=settings.legacy_maps)

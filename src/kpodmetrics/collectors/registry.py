"""Which collectors exist, which profile turns each on, and how to build them.

Profiles follow the seed: minimal = CPU scheduling, memory OOM, disk I/O; standard
adds TCP, block I/O latency, full memory signals, interface network, filesystem, and the cheap cgroup
files (cpu.stat, pressure); comprehensive adds syscalls. Modules are imported lazily
so a collector that is switched off costs nothing, not even its import.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kpodmetrics.collectors.base import Collector

if TYPE_CHECKING:  # config imports this module for its checks
    from kpodmetrics.config import Settings

PROFILES = ("minimal", "standard", "comprehensive")


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    module: str
    min_profile: str
    description: str
    read_every: int = 0
    """0: read every cycle, always (its samples include deltas, which a repeated
    reading would count twice). N >= 1: its samples are levels and kernel totals only,
    so a cycle may re-export the last reading instead of reading again; N is the
    default number of cycles between reads (KPOD_READ_EVERY overrides it)."""

    @property
    def source(self) -> str:
        """"ebpf" (programs in the kernel) or "files" (cgroup v2 / proc / statvfs reads),
        from the module's place (collectors/ebpf/ or collectors/files/)."""
        return self.module.split(".")[2]


ENTRIES: tuple[Entry, ...] = (
    Entry("cpu", "kpodmetrics.collectors.ebpf.runqueue", "minimal",
          "eBPF: run-queue latency, context switches, who held the CPU"),
    Entry("mem", "kpodmetrics.collectors.ebpf.mem_events", "minimal",
          "eBPF: OOM kills (victim's cgroup), major page faults"),
    Entry("diskio", "kpodmetrics.collectors.files.io_stat", "minimal", "io.stat: disk bytes and ops"),
    Entry("net", "kpodmetrics.collectors.ebpf.tcp", "standard",
          "eBPF: TCP bytes, retransmits, connections, RTT"),
    Entry("memory", "kpodmetrics.collectors.files.memory", "standard",
          "memory.current/peak/swap/stat/events"),
    Entry("iface", "kpodmetrics.collectors.files.net_dev", "standard",
          "/proc/<pid>/net/dev per pod network namespace", read_every=1),
    Entry("fs", "kpodmetrics.collectors.files.volumes", "standard",
          "pod volume filesystems (statvfs)", read_every=4),
    Entry("blockio", "kpodmetrics.collectors.ebpf.block_io", "standard",
          "eBPF: block I/O latency per disk and op, charged to the bio's cgroup"),
    Entry("cpustat", "kpodmetrics.collectors.files.cpu_stat", "standard", "cpu.stat usage, throttling"),
    Entry("pressure", "kpodmetrics.collectors.files.pressure", "standard", "PSI stall time"),
    Entry("syscall", "kpodmetrics.collectors.ebpf.syscalls", "comprehensive",
          "eBPF: per-syscall count, errors, latency"),
)
BY_NAME = {e.name: e for e in ENTRIES}


def enabled_names(settings: Settings) -> list[str]:
    """Collectors the profile and the overrides switch on, in registry order."""
    rank = PROFILES.index(settings.profile)
    out = []
    for e in ENTRIES:
        on = PROFILES.index(e.min_profile) <= rank
        on = settings.collectors.get(e.name, on)
        if on:
            out.append(e.name)
    return out


def create(name: str, settings: Settings) -> Collector:
    """Build a collector (imports its module on first use)."""
    module = importlib.import_module(BY_NAME[name].module)
    collector: Collector = module.create(settings)
    if settings.bpf_variants:
        force = getattr(collector, "force_variants", None)
        if force is not None:
            force(settings.bpf_variants)
    return collector


def check_names(switches: Mapping[str, bool]) -> list[str]:
    """Problems of KPOD_COLLECTORS: one line per unknown collector name."""
    unknown = [n for n in switches if n not in BY_NAME]
    return [f"KPOD_COLLECTORS/--collectors: unknown collector {n!r} "
            f"(known: {', '.join(BY_NAME)})" for n in unknown]


def check_every(every: Mapping[str, int]) -> list[str]:
    """Problems of KPOD_READ_EVERY: unknown collectors, and collectors that must be
    read every cycle."""
    out = []
    for name in every:
        e = BY_NAME.get(name)
        if e is None:
            out.append(f"KPOD_READ_EVERY/--read-every: unknown collector {name!r} "
                       f"(known: {', '.join(BY_NAME)})")
        elif not e.read_every:
            slow = [x.name for x in ENTRIES if x.read_every]
            out.append(f"KPOD_READ_EVERY/--read-every: collector {name!r} is read every "
                       "cycle (its samples include increments, which a re-exported reading "
                       f"would count twice); these may be read less often: {', '.join(slow)}")
    return out


def read_every(settings: Settings, name: str) -> int:
    """Cycles between two reads of collector `name` (1 = every cycle; also for names
    the registry does not build, e.g. collectors tests inject)."""
    e = BY_NAME.get(name)
    if e is None or not e.read_every:
        return 1
    return settings.read_every.get(name, e.read_every)


def signals() -> dict[str, tuple[str, tuple[str, ...]]]:
    """signal name -> (collector, its variant names), from every collector's
    declaration (imports the collector modules; only asked for when needed)."""
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for e in ENTRIES:
        try:
            module = importlib.import_module(e.module)
        except ImportError:
            continue
        for obj in vars(module).values():
            for sig in getattr(obj, "signals", ()) if isinstance(obj, type) else ():
                out[sig.name] = (e.name, tuple(v.name for v in sig.variants))
    return out


def check_variants(forced: Mapping[str, str]) -> list[str]:
    """Problems of KPOD_BPF_VARIANTS: unknown signals or variants, one line each."""
    if not forced:
        return []
    known = signals()
    out = []
    for sig, var in forced.items():
        if sig not in known:
            out.append(f"KPOD_BPF_VARIANTS/--bpf-variants: unknown signal {sig!r} "
                       f"(known: {', '.join(sorted(known))})")
        elif var not in known[sig][1]:
            out.append(f"KPOD_BPF_VARIANTS/--bpf-variants: signal {sig!r} has no variant "
                       f"{var!r} (known: {', '.join(known[sig][1])})")
    return out

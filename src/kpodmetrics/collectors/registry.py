"""Which collectors exist, which profile turns each on, and how to build them.

Profiles follow the seed: minimal = CPU scheduling, memory OOM, disk I/O; standard
adds TCP, block I/O latency, full memory signals, interface network, filesystem, and the cheap cgroup
files (cpu.stat, pressure); comprehensive adds syscalls. Modules are imported lazily
so a collector that is switched off costs nothing, not even its import.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from kpodmetrics.collectors.base import Collector
from kpodmetrics.config import PROFILES, Settings, add_validator


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    module: str
    min_profile: str
    description: str


ENTRIES: tuple[Entry, ...] = (
    Entry("cpu", "kpodmetrics.collectors.ebpf.runqueue", "minimal",
          "eBPF: run-queue latency, context switches"),
    Entry("mem", "kpodmetrics.collectors.ebpf.mem_events", "minimal",
          "eBPF: OOM kills (victim's cgroup), major page faults"),
    Entry("diskio", "kpodmetrics.collectors.files.io_stat", "minimal", "io.stat: disk bytes and ops"),
    Entry("net", "kpodmetrics.collectors.ebpf.tcp", "standard",
          "eBPF: TCP bytes, retransmits, connections, RTT"),
    Entry("memory", "kpodmetrics.collectors.files.memory", "standard",
          "memory.current/peak/swap/stat/events"),
    Entry("iface", "kpodmetrics.collectors.files.net_dev", "standard",
          "/proc/<pid>/net/dev per pod network namespace"),
    Entry("fs", "kpodmetrics.collectors.files.volumes", "standard", "pod volume filesystems (statvfs)"),
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
    return collector


def _check_names(settings: Settings) -> list[str]:
    unknown = [n for n in settings.collectors if n not in BY_NAME]
    if not unknown:
        return []
    return [f"KPOD_COLLECTORS/--collectors: unknown collector {n!r} "
            f"(known: {', '.join(BY_NAME)})" for n in unknown]


add_validator(_check_names)

"""Memory per cgroup: usage levels (memory.current/peak/swap.current), anon and file
from memory.stat, and the running counts in memory.stat pgmajfault and memory.events.

Needs the memory controller; on a hybrid host's controller-less unified tree these
files are absent and nothing is reported (not an error). memory.peak exists from 5.19
and memory.swap.current only with swap accounting; each is reported when present.
"""

from __future__ import annotations

from kpodmetrics import families
from kpodmetrics.collectors.base import CollectContext
from kpodmetrics.collectors.files.support.formats import parse_flat_keyed, parse_single
from kpodmetrics.collectors.files.support.percgroup import PerCgroupCollector
from kpodmetrics.config import Settings
from kpodmetrics.families import Family, FamilyType
from kpodmetrics.pods.owner import CgroupRef
from kpodmetrics.samples import Kind, Sample

NAME = "memory"
EVENTS = ("low", "high", "max", "oom", "oom_kill")
USAGE = Family("kpod_mem_usage_bytes", FamilyType.GAUGE,
               "Memory charged to the cgroup (memory.current).", "By")
PEAK = Family("kpod_mem_peak_bytes", FamilyType.GAUGE,
              "Highest memory usage recorded for the cgroup (memory.peak).", "By")
SWAP = Family("kpod_mem_swap_bytes", FamilyType.GAUGE,
              "Swap used by the cgroup (memory.swap.current).", "By")
ANON = Family("kpod_mem_anon_bytes", FamilyType.GAUGE,
              "Anonymous memory of the cgroup (memory.stat anon).", "By")
FILE = Family("kpod_mem_file_bytes", FamilyType.GAUGE,
              "Page cache of the cgroup (memory.stat file).", "By")
MAJOR_FAULTS = Family("kpod_mem_cgroup_major_page_faults_total", FamilyType.COUNTER,
                      "Major page faults in the cgroup (memory.stat pgmajfault).")
MEM_EVENTS = Family("kpod_mem_events_total", FamilyType.COUNTER,
                    "memory.events counts: low/high/max boundary hits, oom, oom_kill.", "",
                    ("event",))
FAMILIES = families.register(USAGE, PEAK, SWAP, ANON, FILE, MAJOR_FAULTS, MEM_EVENTS)
_SINGLES = (
    ("memory.current", USAGE),
    ("memory.peak", PEAK),
    ("memory.swap.current", SWAP),
)


class MemoryCollector(PerCgroupCollector):
    name = NAME
    families = FAMILIES
    files = ("memory.current", "memory.peak", "memory.swap.current", "memory.stat",
             "memory.events")
    own_value = frozenset({PEAK})  # a maximum, not a sum

    def samples_for(
        self, ref: CgroupRef, contents: dict[str, bytes], ctx: CollectContext
    ) -> list[Sample]:
        cid = ref.cgroup_id
        out: list[Sample] = []
        for fname, family in _SINGLES:
            data = contents.get(fname)
            if data is None:
                continue
            value = parse_single(data)
            if value is None:
                ctx.count_error(self.name)
                continue
            out.append(Sample(family, cid, float(value), Kind.GAUGE))
        stat = contents.get("memory.stat")
        if stat is not None:
            parsed = parse_flat_keyed(stat)
            bad = parsed.malformed
            for key, family, kind in (
                ("anon", ANON, Kind.GAUGE),
                ("file", FILE, Kind.GAUGE),
                ("pgmajfault", MAJOR_FAULTS, Kind.CUMULATIVE),
            ):
                value = parsed.values.get(key)
                if value is None:
                    continue
                if value < 0:
                    bad += 1
                    continue
                out.append(Sample(family, cid, float(value), kind))
            if bad:
                ctx.count_error(self.name, bad)
        events = contents.get("memory.events")
        if events is not None:
            parsed = parse_flat_keyed(events)
            bad = parsed.malformed
            for event in EVENTS:
                value = parsed.values.get(event)
                if value is None:
                    continue
                if value < 0:
                    bad += 1
                    continue
                out.append(Sample(MEM_EVENTS, cid, float(value), Kind.CUMULATIVE,
                                  (("event", event),)))
            if bad:
                ctx.count_error(self.name, bad)
        return out


def create(settings: Settings) -> MemoryCollector:
    return MemoryCollector()

"""Decoding a batch read of cpu_stats, with bytes packed by hand from the C layout."""

from __future__ import annotations

import struct

from kpodmetrics.bpf.maps import MapRead
from kpodmetrics.bpf.mapspec import MapDecoder
from kpodmetrics.collectors.ebpf.runqueue import CONTEXT_SWITCHES, RUNQUEUE, STATS
from kpodmetrics.samples import HistogramSample, Sample

# struct kpod_cpu_stats { struct kpod_hist { u64 slots[32]; u64 sum; u64 count; } runq;
#                         u64 nvcsw; u64 nivcsw; }  -> 36 little-endian u64
VALUE = struct.Struct("<36Q")


def decode(read: MapRead) -> list[Sample | HistogramSample]:
    return MapDecoder(STATS).decode(read).samples


def entry(cg: int, slots: dict[int, int], total: int, vol: int, invol: int) -> tuple[bytes, bytes]:
    s = [0] * 32
    for k, n in slots.items():
        s[k] = n
    return struct.pack("<Q", cg), VALUE.pack(*s, total, sum(s), vol, invol)


def test_batch_read_decodes_per_cgroup() -> None:
    e1 = entry(111, {3: 2, 31: 1}, 5000, 7, 0)
    e2 = entry(222, {}, 0, 0, 4)
    read = MapRead(e1[0] + e2[0], e1[1] + e2[1], 2, 8, VALUE.size)
    out = list(decode(read))
    hists = [s for s in out if isinstance(s, HistogramSample)]
    scalars = [s for s in out if isinstance(s, Sample)]
    assert len(hists) == 1
    h = hists[0]
    assert (h.family.name, h.cgroup_id, h.total, h.count) == (RUNQUEUE.name, 111, 5000, 3)
    assert h.slots[3] == 2 and h.slots[31] == 1
    assert {(s.cgroup_id, dict(s.labels)["kind"], s.value) for s in scalars} == {
        (111, "voluntary", 7.0), (222, "involuntary", 4.0)}
    assert all(s.family.name == CONTEXT_SWITCHES.name for s in scalars)


def test_empty_read_yields_nothing() -> None:
    assert list(decode(MapRead(b"", b"", 0, 8, VALUE.size))) == []

"""The generic map decoder: specs are checked when declared, keys carry labels.

Entries are packed by hand in the C layout of kpod_shared.h (struct.pack), not with
the ctypes mirrors the decoder reads offsets from.
"""

from __future__ import annotations

import struct

import pytest

from kpodmetrics.bpf.maps import MapRead
from kpodmetrics.bpf.mapspec import Count, Hist, MapDecoder, MapSpec
from kpodmetrics.bpf.structs import KpodMemStats
from kpodmetrics.collectors.ebpf import mem_events, syscalls
from kpodmetrics.samples import HistogramSample, Sample

SYS_KEY = struct.Struct("<QII")  # cgroup_id, nr, pad
SYS_VALUE = struct.Struct("<32QQQQ")  # latency{slots, sum, count}, errors


def sys_entry(cg: int, nr: int, slots: dict[int, int], total: int, errors: int) -> tuple[bytes, bytes]:
    s = [0] * 32
    for k, n in slots.items():
        s[k] = n
    return SYS_KEY.pack(cg, nr, 0), SYS_VALUE.pack(*s, total, sum(s), errors)


def test_syscall_key_names_the_label_and_count_is_the_sample_count() -> None:
    entries = [sys_entry(5, 257, {12: 3}, 9000, 1), sys_entry(5, 0, {}, 0, 2),
               sys_entry(6, 999, {1: 1}, 2, 0)]  # 999: not configured
    read = MapRead(b"".join(k for k, _ in entries), b"".join(v for _, v in entries),
                   3, SYS_KEY.size, SYS_VALUE.size)
    got = MapDecoder(syscalls.STATS, label_of={"syscall": {257: "openat", 0: "read"}.get}).decode(read)
    scalars = {(s.family.name, s.cgroup_id, s.labels, s.value) for s in got.samples
               if isinstance(s, Sample)}
    assert scalars == {
        (syscalls.COUNT.name, 5, (("syscall", "openat"),), 3.0),
        (syscalls.ERRORS.name, 5, (("syscall", "openat"),), 1.0),
        (syscalls.ERRORS.name, 5, (("syscall", "read"),), 2.0),
    }
    (h,) = [s for s in got.samples if isinstance(s, HistogramSample)]
    assert (h.family.name, h.total, h.slots[12], h.labels) == (
        syscalls.LATENCY.name, 9000, 3, (("syscall", "openat"),))
    assert got.unlabeled == 1


def test_a_read_of_another_layout_is_refused() -> None:
    dec = MapDecoder(mem_events.STATS)
    with pytest.raises(ValueError, match="mem_stats"):
        dec.decode(MapRead(b"\0" * 8, b"\0" * 24, 1, 8, 24))


def test_mem_counters() -> None:
    read = MapRead(struct.pack("<QQ", 1, 2), struct.pack("<QQQQ", 4, 0, 0, 7), 2, 8, 16)
    got = MapDecoder(mem_events.STATS).decode(read).samples
    assert {(s.family.name, s.cgroup_id, s.value) for s in got} == {
        (mem_events.OOM_KILLS.name, 1, 4.0), (mem_events.MAJOR_FAULTS.name, 2, 7.0)}


def test_spec_refuses_a_family_of_the_wrong_type() -> None:
    with pytest.raises(ValueError, match="is a histogram, expected a counter"):
        MapSpec("m", KpodMemStats, fields=(Count("oom_kills", syscalls.LATENCY),))
    with pytest.raises(ValueError, match="expected a histogram"):
        MapSpec("m", KpodMemStats, fields=(Hist("oom_kills", mem_events.OOM_KILLS),))


def test_spec_refuses_labels_the_family_does_not_declare() -> None:
    with pytest.raises(ValueError, match="do not match"):
        MapSpec("m", KpodMemStats, fields=(Count("oom_kills", mem_events.OOM_KILLS,
                                                 (("kind", "x"),)),))
    with pytest.raises(ValueError, match="do not match"):  # syscall families need the key label
        MapSpec("m", KpodMemStats, fields=(Count("oom_kills", syscalls.ERRORS),))


def test_unknown_field_fails_when_the_decoder_is_built() -> None:
    spec = MapSpec("m", KpodMemStats, fields=(Count("oom_kils", mem_events.OOM_KILLS),))
    with pytest.raises(KeyError, match="oom_kils"):
        MapDecoder(spec)


def test_every_health_index_of_every_object_is_named_once() -> None:
    """metric_maps of each eBPF collector uses the members of its object's generated
    health enum, each exactly once, and nothing else (the _N member is the size)."""
    from kpodmetrics.bpf import structs
    from kpodmetrics.collectors.ebpf import block_io, runqueue, tcp

    for cls, enum in ((runqueue.CpuSchedCollector, structs.KpodCpuHealth),
                      (tcp.NetTcpCollector, structs.KpodNetHealth),
                      (mem_events.MemCollector, structs.KpodMemHealth),
                      (syscalls.SyscallCollector, structs.KpodSysHealth),
                      (block_io.BlockIOCollector, structs.KpodBioHealth)):
        size = next(m for m in enum if m.name.endswith("_N"))
        assert sorted(cls.metric_maps.values()) == list(range(size)), cls.__name__
        assert all(isinstance(v, enum) for v in cls.metric_maps.values()), cls.__name__

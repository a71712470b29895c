"""Python mirror of ebpf/kpod_shared.h: the one place userspace knows kernel layouts.

tests/unit/test_struct_layout.py compares every struct here with the BTF of the
built objects (size and each member's offset), so a change on one side fails loudly.
"""

from __future__ import annotations

import ctypes

HIST_SLOTS = 32
"""KPOD_HIST_SLOTS: slot k counts 2^(k-1) < v <= 2^k; the last slot is open-ended."""


class KpodHist(ctypes.Structure):
    _fields_ = [
        ("slots", ctypes.c_uint64 * HIST_SLOTS),
        ("sum", ctypes.c_uint64),
        ("count", ctypes.c_uint64),
    ]


class KpodCpuStats(ctypes.Structure):
    _fields_ = [
        ("runq", KpodHist),
        ("nvcsw", ctypes.c_uint64),
        ("nivcsw", ctypes.c_uint64),
    ]


class KpodMapHealth(ctypes.Structure):
    _fields_ = [
        ("entries_written", ctypes.c_uint64),
        ("update_errors", ctypes.c_uint64),
    ]


# ---- net.bpf.c (TCP) mirrors below this line ----


class KpodTcpStats(ctypes.Structure):
    """struct kpod_tcp_stats: per-cgroup TCP deltas since the last read."""

    _fields_ = [
        ("sent_bytes", ctypes.c_uint64),
        ("received_bytes", ctypes.c_uint64),
        ("retrans_segs", ctypes.c_uint64),
        ("opened_active", ctypes.c_uint64),
        ("opened_passive", ctypes.c_uint64),
        ("failed", ctypes.c_uint64),
        ("closed", ctypes.c_uint64),
        ("active_delta", ctypes.c_int64),
        ("rtt", KpodHist),
    ]


# ---- mem.bpf.c and syscall.bpf.c mirrors below this line ----


class KpodMemStats(ctypes.Structure):
    _fields_ = [
        ("oom_kills", ctypes.c_uint64),
        ("major_faults", ctypes.c_uint64),
    ]


SYS_NR_MAX = 1024
"""KPOD_SYS_NR_MAX: entries of the syscall filter ARRAY (valid numbers are below it)."""


class KpodSysKey(ctypes.Structure):
    _fields_ = [
        ("cgroup_id", ctypes.c_uint64),
        ("nr", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
    ]


class KpodSysStats(ctypes.Structure):
    _fields_ = [
        ("latency", KpodHist),
        ("errors", ctypes.c_uint64),
    ]


# ---- bio.bpf.c (block I/O latency) mirrors below this line ----


class KpodBioKey(ctypes.Structure):
    _fields_ = [
        ("cgroup_id", ctypes.c_uint64),
        ("dev", ctypes.c_uint32),
        ("op", ctypes.c_uint32),
    ]


class KpodBioStats(ctypes.Structure):
    _fields_ = [
        ("latency", KpodHist),
    ]


class KpodBioStart(ctypes.Structure):
    _fields_ = [
        ("issued_ns", ctypes.c_uint64),
        ("key", KpodBioKey),
    ]


BIO_NO_OWNER = 0
"""KPOD_BIO_NO_OWNER: index in bio_unowned of completions with no cgroup to charge."""
BIO_NO_START = 1
"""KPOD_BIO_NO_START: index in bio_unowned of completions whose issue was not seen."""

# ---- end of bio.bpf.c mirrors ----


# BTF struct name -> mirror, for the layout test (add yours here)
MIRRORS: dict[str, type[ctypes.Structure]] = {
    "kpod_hist": KpodHist,
    "kpod_cpu_stats": KpodCpuStats,
    "kpod_map_health": KpodMapHealth,
    "kpod_tcp_stats": KpodTcpStats,
    "kpod_mem_stats": KpodMemStats,
    "kpod_sys_key": KpodSysKey,
    "kpod_sys_stats": KpodSysStats,
    "kpod_bio_key": KpodBioKey,
    "kpod_bio_stats": KpodBioStats,
    "kpod_bio_start": KpodBioStart,
}

U64 = ctypes.c_uint64
U32 = ctypes.c_uint32


def u64_key(raw: bytes) -> int:
    return int.from_bytes(raw[:8], "little")

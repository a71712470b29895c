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

# ---- mem.bpf.c and syscall.bpf.c mirrors below this line ----

# BTF struct name -> mirror, for the layout test (add yours here)
MIRRORS: dict[str, type[ctypes.Structure]] = {
    "kpod_hist": KpodHist,
    "kpod_cpu_stats": KpodCpuStats,
    "kpod_map_health": KpodMapHealth,
}

U64 = ctypes.c_uint64
U32 = ctypes.c_uint32


def u64_key(raw: bytes) -> int:
    return int.from_bytes(raw[:8], "little")

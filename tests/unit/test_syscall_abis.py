"""The syscall collector's view of two syscall tables (no kernel needed).

ia32 numbers share the filter array with native ones, each entry a bit set of the ABIs
tracking that number; stats keys of ia32 calls sit above KPOD_SYS_NR_IA32 and are
named by the ia32 table; a cgroup's native and ia32 entries of one name become one
series (ebpf/syscall.bpf.c, docs/mem-syscalls.md).
"""

from __future__ import annotations

import pytest

from kpodmetrics import syscalls
from kpodmetrics.bpf.structs import (
    KPOD_SYS_FILTER_IA32,
    KPOD_SYS_FILTER_NATIVE,
    KPOD_SYS_NR_IA32,
    KPOD_SYS_NR_MAX,
)
from kpodmetrics.collectors.ebpf.syscalls import COUNT, LATENCY, SyscallCollector, merge_abis
from kpodmetrics.samples import HistogramSample, Sample


def test_key_space_leaves_native_numbers_alone() -> None:
    assert KPOD_SYS_NR_IA32 >= KPOD_SYS_NR_MAX
    assert (KPOD_SYS_FILTER_NATIVE, KPOD_SYS_FILTER_IA32) == (1, 2)


def test_filter_bits_and_names() -> None:
    c = SyscallCollector({"read": 0, "close": 3, "openat": 257},
                         compat={"read": 3, "close": 6, "openat": 295})
    # 3 is x86_64 close and ia32 read: both bits, two different stats keys
    assert c.filter == {0: 1, 3: 3, 257: 1, 6: 2, 295: 2}
    assert c.names[3] == "close" and c.names[KPOD_SYS_NR_IA32 + 3] == "read"
    assert c.names[KPOD_SYS_NR_IA32 + 6] == "close"


def test_compat_defaults_to_the_ia32_table_on_x86_64(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(syscalls, "native_arch", lambda: "x86_64")
    c = SyscallCollector({"read": 0})
    assert c.compat == {"read": 3}
    assert SyscallCollector({"read": 0}, compat={}).filter == {0: 1}
    monkeypatch.setattr(syscalls, "native_arch", lambda: "aarch64")
    assert SyscallCollector({"read": 63}).compat == {}


def test_merge_adds_native_and_ia32_samples_of_a_name() -> None:
    lab = (("syscall", "read"),)
    other = (("syscall", "close"),)
    slots_a = (1, 2) + (0,) * 30
    slots_b = (0, 3) + (0,) * 30
    out = merge_abis([
        Sample(COUNT, 7, 3.0, labels=lab), HistogramSample(LATENCY, 7, slots_a, 10, labels=lab),
        Sample(COUNT, 7, 1.0, labels=other),
        Sample(COUNT, 7, 3.0, labels=lab), HistogramSample(LATENCY, 7, slots_b, 5, labels=lab),
        Sample(COUNT, 8, 2.0, labels=lab),
    ])
    got = {(s.family.name, s.cgroup_id, s.labels): s for s in out}
    assert len(out) == len(got) == 4
    count = got[(COUNT.name, 7, lab)]
    hist = got[(LATENCY.name, 7, lab)]
    assert isinstance(count, Sample) and count.value == 6.0
    assert isinstance(hist, HistogramSample) and hist.slots[:2] == (1, 5) and hist.total == 15
    assert got[(COUNT.name, 8, lab)].cgroup_id == 8

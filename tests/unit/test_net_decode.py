"""Decoding tcp_stats entries and folding the active-connections gauge.

Entries are built as raw bytes in the C layout (struct.pack of the documented field
order, not the ctypes mirror), so a mirror that drifts from kpod_shared.h fails here
as well as in the BTF layout test.
"""

from __future__ import annotations

import ctypes
import struct

from kpodmetrics.bpf.maps import MapRead
from kpodmetrics.bpf.mapspec import MapDecoder
from kpodmetrics.bpf.structs import KPOD_HIST_SLOTS as HIST_SLOTS
from kpodmetrics.bpf.structs import KpodTcpStats
from kpodmetrics.collectors.ebpf.tcp import (
    ACTIVE,
    CLOSED,
    FAILED,
    OPENED,
    RECEIVED,
    RETRANSMITS,
    RTT,
    SENT,
    STATS,
    ActiveConnections,
)
from kpodmetrics.samples import HistogramSample, Sample

# struct kpod_tcp_stats: 10 x u64 (sent, received, retransmits by cause rto, fast,
# tlp, syn, opened active, passive, failed, closed), 1 x s64, then kpod_hist
LAYOUT = "<10Qq" + f"{HIST_SLOTS}Q" + "QQ"


def raw(sent: int = 0, recv: int = 0, retrans: tuple[int, int, int, int] = (0, 0, 0, 0),
        act: int = 0, pas: int = 0, failed: int = 0, closed: int = 0, delta: int = 0,
        slots: dict[int, int] | None = None, total: int = 0) -> bytes:
    s = [0] * HIST_SLOTS
    for k, n in (slots or {}).items():
        s[k] = n
    return struct.pack(LAYOUT, sent, recv, *retrans, act, pas, failed, closed, delta,
                       *s, total, sum(s))


def decode(cg: int, value: bytes) -> list[Sample | HistogramSample]:
    """The collector's decoder over a one-entry read of these bytes."""
    return MapDecoder(STATS).decode(MapRead(struct.pack("<Q", cg), value, 1, 8, len(value))).samples


def test_layout_size_matches_the_mirror() -> None:
    assert struct.calcsize(LAYOUT) == ctypes.sizeof(KpodTcpStats) == 360


def test_every_counter_lands_in_its_family_with_labels() -> None:
    st = raw(100, 200, (3, 30, 300, 3000), 4, 5, 6, 7, 1)
    got = {(s.family.name, s.labels): s.value for s in decode(42, st) if isinstance(s, Sample)}
    assert got == {
        (SENT.name, ()): 100.0,
        (RECEIVED.name, ()): 200.0,
        (RETRANSMITS.name, (("cause", "rto"),)): 3.0,
        (RETRANSMITS.name, (("cause", "fast"),)): 30.0,
        (RETRANSMITS.name, (("cause", "tlp"),)): 300.0,
        (RETRANSMITS.name, (("cause", "syn"),)): 3000.0,
        (OPENED.name, (("direction", "active"),)): 4.0,
        (OPENED.name, (("direction", "passive"),)): 5.0,
        (FAILED.name, ()): 6.0,
        (CLOSED.name, ()): 7.0,
    }
    assert all(s.cgroup_id == 42 for s in decode(42, st))


def test_zero_counters_and_empty_histogram_are_left_out() -> None:
    st = raw(sent=9)
    out = list(decode(7, st))
    assert [s.family.name for s in out] == [SENT.name]


def test_rtt_histogram_keeps_slots_and_exact_sum() -> None:
    # 3 samples of 20 us (slot 15: 16384 < 20000 <= 32768 ns) and one of 1 ms (slot 20)
    st = raw(slots={15: 3, 20: 1}, total=3 * 20_000 + 1_000_000)
    (h,) = [s for s in decode(1, st) if isinstance(s, HistogramSample)]
    assert h.family.name == RTT.name
    assert h.slots[15] == 3 and h.slots[20] == 1 and h.count == 4
    assert h.total == 1_060_000
    assert len(h.slots) == HIST_SLOTS


def test_rtt_buckets_are_exact_powers_of_two_in_seconds() -> None:
    assert RTT.bounds()[0] == 1024e-9
    # the last exact bound: slot HIST_SLOTS-1 is open-ended, so 2^(HIST_SLOTS-2) ns
    assert RTT.bounds()[-1] == 2.0 ** (HIST_SLOTS - 2) * 1e-9


def test_negative_delta_decodes_signed() -> None:
    st = KpodTcpStats.from_buffer_copy(raw(delta=-3))
    assert st.active_delta == -3
    read = MapRead(struct.pack("<Q", 9), raw(delta=-3), 1, 8, ctypes.sizeof(KpodTcpStats))
    assert MapDecoder(STATS).decode(read).raw == [(9, (-3,))]


def test_active_gauge_sums_deltas_and_forgets_closed_cgroups() -> None:
    g = ActiveConnections()
    assert g.apply([(1, 3), (2, 1)]) == [(1, 3), (2, 1)]
    assert g.apply([(1, -1)]) == [(1, 2), (2, 1)]  # unchanged cgroups are reported again
    assert g.apply([(2, -1)]) == [(1, 2), (2, 0)]  # reported once at 0 ...
    assert g.apply([]) == [(1, 2)]  # ... then forgotten
    assert g.levels == {1: 2}


def test_active_gauge_never_goes_negative() -> None:
    # an LRU eviction lost the +1; the matching -1 must not drive the level below 0
    g = ActiveConnections()
    assert g.apply([(5, -1)]) == [(5, 0)]
    assert g.apply([(5, 1)]) == [(5, 1)]


def test_gauge_family_is_a_gauge() -> None:
    assert ACTIVE.type.value == "gauge"


def test_loss_probe_range_is_the_function_up_to_the_next_text_symbol(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from kpodmetrics.collectors.ebpf.tcp import function_range

    ksyms = tmp_path / "kallsyms"
    ksyms.write_text("ffffffff82088d00 t helper_before\n"
                     "ffffffff82088d30 T tcp_send_loss_probe\n"
                     "ffffffff82088e00 d some_data\n"
                     "ffffffff82088f70 T __pfx_tcp_retransmit_skb\n"
                     "ffffffffc0001000 t tcp_send_loss_probe\t[some_module]\n")
    assert function_range("tcp_send_loss_probe", str(ksyms)) == (0xFFFFFFFF82088D30, 0xFFFFFFFF82088F70)
    # hidden addresses (kptr_restrict) and missing symbols give no range
    ksyms.write_text("0000000000000000 T tcp_send_loss_probe\n0000000000000000 T other\n")
    assert function_range("tcp_send_loss_probe", str(ksyms)) == (0, 0)
    assert function_range("no_such_function", str(ksyms)) == (0, 0)
    assert function_range("x", str(tmp_path / "absent")) == (0, 0)

"""Cost of decoding one snap of a metric map: the generic MapDecoder against the
per-entry ctypes `from_buffer_copy` the collectors used before (bpf/mapspec.py).

    .venv/bin/python -m benchmarks.decode_bench [entries]

Prints the best of 7 runs of each over the same random tcp_stats read (no kernel).
"""

from __future__ import annotations

import random
import struct
import sys
import time
from collections.abc import Callable

from kpodmetrics.bpf.maps import MapRead
from kpodmetrics.bpf.mapspec import MapDecoder
from kpodmetrics.bpf.structs import KpodTcpStats
from kpodmetrics.collectors.ebpf import tcp
from kpodmetrics.collectors.ebpf.tcp import STATS
from kpodmetrics.samples import HistogramSample, Sample


def read_of(n: int) -> MapRead:
    rnd = random.Random(1)
    vals = b"".join(struct.pack("<7Qq32QQQ", *(rnd.randint(0, 5) for _ in range(8)),
                                *(rnd.randint(0, 3) for _ in range(32)), 100, 10)
                    for _ in range(n))
    return MapRead(b"".join(struct.pack("<Q", i) for i in range(n)), vals, n, 8, 336)


def ctypes_baseline(read: MapRead) -> list[Sample | HistogramSample]:
    """The former tcp decode: a ctypes copy per entry, the same samples."""
    out: list[Sample | HistogramSample] = []
    act, pas = (("direction", "active"),), (("direction", "passive"),)
    for k, v in read.items():
        st = KpodTcpStats.from_buffer_copy(v)
        cg = int.from_bytes(k, "little")
        for fam, val, labels in ((tcp.SENT, st.sent_bytes, ()), (tcp.RECEIVED, st.received_bytes, ()),
                                 (tcp.RETRANSMITS, st.retrans_segs, ()),
                                 (tcp.OPENED, st.opened_active, act),
                                 (tcp.OPENED, st.opened_passive, pas), (tcp.FAILED, st.failed, ()),
                                 (tcp.CLOSED, st.closed, ())):
            if val:
                out.append(Sample(fam, cg, float(val), labels=labels))
        slots = tuple(int(s) for s in st.rtt.slots)
        if any(slots):
            out.append(HistogramSample(tcp.RTT, cg, slots, int(st.rtt.sum)))
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4096
    read = read_of(n)
    dec = MapDecoder(STATS)
    runs: dict[str, Callable[[], object]] = {
        "ctypes from_buffer_copy": lambda: ctypes_baseline(read),
        "MapDecoder": lambda: dec.decode(read)}
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(15):  # interleaved: a noisy neighbour hits both alike
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    for name, t in best.items():
        print(f"{name:24s} {t * 1e3:7.1f} ms for {n} tcp_stats entries (best of 15)")


if __name__ == "__main__":
    main()

"""Parser for `/proc/<pid>/net/dev`: per-interface counters of one network namespace.

Format (net/core/net-procfs.c): two header lines containing `|`, then one line per
interface, `name: ` followed by 16 unsigned counters — receive bytes, packets, errs,
drop, fifo, frame, compressed, multicast; transmit bytes, packets, errs, drop, fifo,
colls, carrier, compressed. Very old kernels glue large numbers to the colon, so the
name is split off at the first colon rather than at whitespace (names cannot contain
one: dev_valid_name rejects ':', '/' and whitespace).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kpodmetrics.collectors.files.support.formats import lines_of, parse_uint

FIELDS = 16


@dataclass(frozen=True, slots=True)
class IfaceCounters:
    rx_bytes: int
    rx_packets: int
    rx_errors: int
    rx_drops: int
    tx_bytes: int
    tx_packets: int
    tx_errors: int
    tx_drops: int


@dataclass(slots=True)
class NetDev:
    interfaces: dict[str, IfaceCounters] = field(default_factory=dict)
    malformed: int = 0


def parse_net_dev(data: bytes) -> NetDev:
    out = NetDev()
    for line in lines_of(data):
        if "|" in line:
            continue  # header
        name, sep, rest = line.partition(":")
        name = name.strip()
        nums = [parse_uint(t) for t in rest.split()]
        if (
            not sep
            or not name
            or any(c.isspace() or c == "/" for c in name)
            or len(name) > 15
            or len(nums) != FIELDS
            or name in out.interfaces
        ):
            out.malformed += 1
            continue
        vals = [n for n in nums if n is not None]
        if len(vals) != FIELDS:
            out.malformed += 1
            continue
        out.interfaces[name] = IfaceCounters(
            rx_bytes=vals[0], rx_packets=vals[1], rx_errors=vals[2], rx_drops=vals[3],
            tx_bytes=vals[8], tx_packets=vals[9], tx_errors=vals[10], tx_drops=vals[11],
        )
    return out

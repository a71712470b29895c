"""TCP per cgroup, charged to the socket's owner (ebpf/net.bpf.c).

Every event is attributed to the cgroup recorded in the socket, because retransmits,
RTT samples and state changes run in softirq/timer context where the current task is
unrelated. The kernel keeps deltas in one LRU hash keyed by cgroup id; each cycle
snaps and resets it. The active-connections gauge is the only state kept here: the
running sum of the kernel's per-cgroup open/close deltas (see `ActiveConnections`).
"""

from __future__ import annotations

from collections.abc import Iterable

from kpodmetrics import families
from kpodmetrics.bpf.loader import BpfObject
from kpodmetrics.bpf.mapspec import Count, Hist, MapDecoder, MapSpec
from kpodmetrics.bpf.structs import KPOD_HEALTH_NET_TCP_STATS, KpodTcpStats
from kpodmetrics.bpf.variants import Signal, Variant
from kpodmetrics.collectors.base import CollectContext
from kpodmetrics.collectors.ebpf.base import BpfCollectorBase
from kpodmetrics.config import Settings
from kpodmetrics.families import Family, FamilyType
from kpodmetrics.samples import HistogramSample, Kind, Sample

NS = 1e-9
# le = 2^k ns for k = 10, 12, ..., 30: 1.02 us (same-host loopback) ... 1.07 s. Every
# bound is exact because slot k ends at 2^k ns; 2^30 is the highest exact one (the last
# slot is open-ended), so RTTs above 1.07 s fall in +Inf (the sum stays exact).
RTT_EXPONENTS = tuple(range(10, 31, 2))

SENT = Family("kpod_net_tcp_sent_bytes_total", FamilyType.COUNTER,
              "Bytes applications sent on TCP sockets (per send call), by the socket's owner",
              unit="By")
RECEIVED = Family("kpod_net_tcp_received_bytes_total", FamilyType.COUNTER,
                  "Bytes applications read from TCP sockets (MSG_PEEK, MSG_ERRQUEUE excluded), "
                  "by the socket's owner",
                  unit="By")
RETRANSMITS = Family("kpod_net_tcp_retransmits_total", FamilyType.COUNTER,
                     "TCP segments retransmitted (as RetransSegs counts them, SYN-ACKs included), "
                     "by cause: rto (timeout), fast (fast retransmit), tlp (tail-loss probe), "
                     "syn (SYN/SYN-ACK)",
                     label_names=("cause",))
RETRANSMIT_CAUSES = ("rto", "fast", "tlp", "syn")
"""Values of the `cause` label; every retransmit has exactly one (ebpf/net.bpf.c)."""
OPENED = Family("kpod_net_tcp_connections_opened_total", FamilyType.COUNTER,
                "TCP connections established; active: connect(), passive: accepted",
                label_names=("direction",))
FAILED = Family("kpod_net_tcp_connections_failed_total", FamilyType.COUNTER,
                "TCP connection attempts that closed before being established")
CLOSED = Family("kpod_net_tcp_connections_closed_total", FamilyType.COUNTER,
                "Established TCP connections that reached CLOSE")
ACTIVE = Family("kpod_net_tcp_connections_active", FamilyType.GAUGE,
                "TCP connections established since the agent started and not yet closed")
RTT = Family("kpod_net_tcp_rtt_seconds", FamilyType.HISTOGRAM,
             "Smoothed RTT (srtt) of TCP sockets, one sample per received segment",
             unit="s", bucket_exponents=RTT_EXPONENTS, scale=NS)
FAMILIES = (SENT, RECEIVED, RETRANSMITS, OPENED, FAILED, CLOSED, ACTIVE, RTT)
families.register(*FAMILIES)

SIGNALS = (
    Signal("tcp_send", (SENT,), (
        Variant("tp_btf", ("kpod_tcp_send",)),
        # before 6.3; inet_sendpage carries sendfile/splice until 6.5
        Variant("fentry", ("kpod_tcp_send_fexit", "kpod_tcp_send6_fexit",
                           "kpod_tcp_sendpage_fexit")),
        Variant("fentry_nosendpage", ("kpod_tcp_send_fexit", "kpod_tcp_send6_fexit")),
    )),
    Signal("tcp_recv", (RECEIVED,), (
        Variant("tp_btf", ("kpod_tcp_recv",)),
        Variant("fentry", ("kpod_tcp_recv_fexit", "kpod_tcp_recv6_fexit")),
    )),
    Signal("tcp_retransmits", (RETRANSMITS,), (
        Variant("tp_btf", ("kpod_tcp_retrans", "kpod_tcp_synack")),
        Variant("raw_tp", ("kpod_tcp_retrans_raw", "kpod_tcp_synack_raw")),
    )),
    Signal("tcp_state", (OPENED, FAILED, CLOSED, ACTIVE), (
        Variant("tp_btf", ("kpod_tcp_state",), maps=("tcp_opened",)),
        # socket storage is refused in tracing programs before 5.11
        Variant("tp_btf_hash", ("kpod_tcp_state_hash",), maps=("tcp_opened_hash",)),
        Variant("raw_tp", ("kpod_tcp_state_raw",), maps=("tcp_opened_hash",)),
    )),
    Signal("tcp_rtt", (RTT,), (
        Variant("tp_btf", ("kpod_tcp_probe",)),
        Variant("tp_btf_read", ("kpod_tcp_probe_read",)),
        Variant("raw_tp", ("kpod_tcp_probe_raw",)),
    )),
)
"""Each signal's program variants, preferred first (ebpf/net.bpf.c says what each
hooks, ebpf/core_fixes.bpf.h why the fallbacks exist). A signal with no working
variant takes down only its families."""

STATS = MapSpec("tcp_stats", KpodTcpStats, raw=("active_delta",),
                fields=(
                    Count("sent_bytes", SENT),
                    Count("received_bytes", RECEIVED),
                    *(Count(f"retrans_{cause}", RETRANSMITS, (("cause", cause),))
                      for cause in RETRANSMIT_CAUSES),
                    Count("opened_active", OPENED, (("direction", "active"),)),
                    Count("opened_passive", OPENED, (("direction", "passive"),)),
                    Count("failed", FAILED),
                    Count("closed", CLOSED),
                    Hist("rtt", RTT),
                ))
"""tcp_stats: socket owner's cgroup id -> struct kpod_tcp_stats; `active_delta` is
folded here into the ACTIVE gauge (see ActiveConnections)."""


class ActiveConnections:
    """Running per-cgroup sum of the kernel's `active_delta`.

    The kernel adds 1 when it counts an open and takes 1 back only when a socket it
    counted closes, so the sum never counts connections older than the agent. It is
    clamped at 0 because an LRU eviction can drop a +1 whose -1 arrives later. A cgroup
    whose level returns to 0 is reported once more at 0, then forgotten, so this map
    only holds cgroups with open connections.
    """

    def __init__(self) -> None:
        self.levels: dict[int, int] = {}

    def apply(self, deltas: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
        """Fold this cycle's (cgroup, delta) pairs; return (cgroup, level) to report."""
        for cg, delta in deltas:
            if delta:
                self.levels[cg] = max(0, self.levels.get(cg, 0) + delta)
        out = list(self.levels.items())
        for cg, level in out:
            if level == 0:
                del self.levels[cg]
        return out


KALLSYMS = "/proc/kallsyms"


def function_range(name: str, kallsyms: str = KALLSYMS) -> tuple[int, int]:
    """[start, end) of kernel text function `name`: its address up to the next higher
    text symbol's. (0, 0) when it is absent or the addresses are hidden (kptr_restrict
    shows zeros to readers without CAP_SYSLOG)."""
    text: list[int] = []
    start = 0
    try:
        with open(kallsyms) as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 3 or parts[1] not in "tT":
                    continue
                addr = int(parts[0], 16)
                text.append(addr)
                if parts[2] == name and len(parts) == 3:
                    start = addr
    except OSError:
        return 0, 0
    if not start:
        return 0, 0
    end = min((a for a in text if a > start), default=0)
    return (start, end) if end else (0, 0)


class NetTcpCollector(BpfCollectorBase):
    name = "net"
    object_name = "net"
    health_map = "net_health"
    metric_maps = {STATS.map: KPOD_HEALTH_NET_TCP_STATS}
    families = FAMILIES
    signals = SIGNALS

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.active = ActiveConnections()
        self.decoder = MapDecoder(STATS)

    def attach(self, obj: BpfObject) -> None:
        """Tell the retransmit programs where tcp_send_loss_probe() lives (they find
        loss probes on the kernel stack), then attach."""
        lo, hi = function_range("tcp_send_loss_probe")
        ranges = obj.map("tlp_range")
        for idx, addr in ((0, lo), (1, hi)):
            ranges.update(idx.to_bytes(4, "little"), addr.to_bytes(8, "little"))
        super().attach(obj)

    def collect(self, ctx: CollectContext) -> Iterable[Sample | HistogramSample]:
        got = self.decoder.decode(self.read_map(STATS.map))
        out = got.samples
        for cg, level in self.active.apply((cg, raw[0]) for cg, raw in got.raw):
            out.append(Sample(ACTIVE, cg, float(level), kind=Kind.GAUGE))
        return out


def create(settings: Settings) -> NetTcpCollector:
    return NetTcpCollector(legacy_maps=settings.legacy_maps)

"""What cost an owner its time between two scrapes: one finding per kind of delay.

Every finding is computed from counter *differences* between two reads of the same
agent, per series (a series that restarted counts from zero again), summed over the
owner's series. Time-valued findings (CPU starvation, memory and I/O stalls, time in
syscalls) are ranked by the seconds they cost; count-valued ones (OOM kills, TCP
retransmits) carry no time and are listed with their counts. A family the agent does
not declare makes the finding "not available from this agent", never zero.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from kpodmetrics.why.owners import Owner, owner_of
from kpodmetrics.why.scrape import LabelSet, Scrape

RUNQ = "kpod_cpu_runqueue_latency_seconds"
HOLDER = "kpod_cpu_runqueue_wait_by_holder_seconds_total"
THROTTLED = "kpod_cpu_throttled_seconds_total"
PERIODS = "kpod_cpu_periods_total"
THROTTLED_PERIODS = "kpod_cpu_throttled_periods_total"
PSI_CPU = "kpod_pressure_cpu_waiting_seconds_total"
PSI_MEM = "kpod_pressure_memory_waiting_seconds_total"
PSI_MEM_FULL = "kpod_pressure_memory_stalled_seconds_total"
PSI_IO = "kpod_pressure_io_waiting_seconds_total"
MAJFLT = "kpod_mem_major_page_faults_total"
OOM = "kpod_mem_oom_kills_total"
DISK = "kpod_disk_io_latency_seconds"
RETRANS = "kpod_net_tcp_retransmits_total"
RTT = "kpod_net_tcp_rtt_seconds"
SYS_LAT = "kpod_syscall_latency_seconds"
SYS_ERR = "kpod_syscall_errors_total"

# Syscalls whose whole purpose is to wait for work (an idle server sits in them):
# their time is shown, never ranked as a cost. futex stays ranked: lock waits cost.
IDLE_SYSCALLS = frozenset({"epoll_wait", "epoll_pwait", "epoll_pwait2", "poll", "ppoll",
                           "select", "pselect6", "nanosleep", "clock_nanosleep", "pause",
                           "wait4", "waitid", "accept", "accept4", "io_getevents"})

Resolve = Callable[[LabelSet, str], "Owner | None"]
"""(labels, label prefix) -> the owner the labels belong to, or None to skip."""


@dataclass
class Finding:
    """One kind of delay of one owner over the window."""

    key: str
    title: str
    seconds: float | None
    """Time it cost the owner over the window; None when the signal is a count."""
    summary: str = ""
    parts: list[str] = field(default_factory=list)
    count: float = 0.0
    """For count-valued findings: how many (kills, retransmits)."""
    missing: list[str] = field(default_factory=list)
    """Families this finding wanted that the agent does not declare."""
    available: bool = True
    culprits: list[tuple[str, float]] = field(default_factory=list)
    """Who caused it, with their share (0..1): the CPU holders."""

    @property
    def weight(self) -> float:
        return self.seconds if self.seconds is not None else 0.0


def _delta(prev: float | None, cur: float) -> float:
    if prev is None or cur < prev:  # new series, or the agent restarted: counts from 0
        return cur
    return cur - prev


class Window:
    """Two scrapes of one agent; per-owner sums of per-series differences."""

    def __init__(self, prev: Scrape, cur: Scrape, resolve: Resolve) -> None:
        self.prev, self.cur = prev, cur
        self.resolve = resolve
        # The counters moved between the two collections the pages show, not between
        # the reads: an agent whose cycles run late (a loaded node, a slow VM) would
        # otherwise have its counters divided by the wrong time (6.12 VM: 0.97 s of
        # wait per second read-to-read against schedstat's 0.70).
        if prev.collected_at is not None and cur.collected_at is not None:
            self.seconds = max(cur.collected_at - prev.collected_at, 0.0)
        else:
            self.seconds = max(cur.at - prev.at, 0.0)

    def has(self, family: str) -> bool:
        return self.cur.has(family) or self.prev.has(family)

    def deltas(self, sample: str, prefix: str = "") -> dict[Owner, list[tuple[LabelSet, float]]]:
        """Per owner: (labels, difference) of each series of `sample`."""
        before = self.prev.series(sample)
        out: dict[Owner, list[tuple[LabelSet, float]]] = {}
        for labels, value in self.cur.series(sample).items():
            owner = self.resolve(labels, prefix)
            if owner is None:
                continue
            d = _delta(before.get(labels), value)
            if d:
                out.setdefault(owner, []).append((labels, d))
        return out

    def totals(self, sample: str) -> dict[Owner, float]:
        return {o: sum(d for _, d in rows) for o, rows in self.deltas(sample).items()}

    def by_label(self, sample: str, label: str) -> dict[Owner, dict[str, float]]:
        out: dict[Owner, dict[str, float]] = {}
        for o, rows in self.deltas(sample).items():
            acc = out.setdefault(o, {})
            for labels, d in rows:
                v = dict(labels).get(label, "")
                acc[v] = acc.get(v, 0.0) + d
        return out


def fmt_seconds(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    if s > 0:
        return f"{s * 1e6:.0f} µs"
    return "0 s"


def holder_name(labels: LabelSet) -> str:
    """The holder a holder-family series names: ns/pod, a cgroup, or __idle__/__other__."""
    o = owner_of(labels, "holder_")
    if o is None:
        return "?"
    if o.pod.startswith("__"):
        return o.pod
    return str(o)


def assess(win: Window, owners: Iterable[Owner] | None = None) -> dict[Owner, list[Finding]]:
    """Findings per owner; `owners` limits (and guarantees) the owners reported."""
    runq_sum, runq_n = win.totals(RUNQ + "_sum"), win.totals(RUNQ + "_count")
    thr = win.totals(THROTTLED)
    periods, thr_periods = win.totals(PERIODS), win.totals(THROTTLED_PERIODS)
    psi_cpu = win.totals(PSI_CPU)
    psi_mem, psi_mem_full = win.totals(PSI_MEM), win.totals(PSI_MEM_FULL)
    majflt, oom = win.totals(MAJFLT), win.totals(OOM)
    psi_io = win.totals(PSI_IO)
    disk_sum, disk_n = win.totals(DISK + "_sum"), win.totals(DISK + "_count")
    disk_by = _by_labels(win, DISK + "_sum", ("device", "op"))
    retrans = win.by_label(RETRANS, "cause")
    rtt_sum, rtt_n = win.totals(RTT + "_sum"), win.totals(RTT + "_count")
    sys_sum = win.by_label(SYS_LAT + "_sum", "syscall")
    sys_n = win.by_label(SYS_LAT + "_count", "syscall")
    sys_err = win.by_label(SYS_ERR, "syscall")
    holders: dict[Owner, dict[str, float]] = {}
    for o, rows in win.deltas(HOLDER).items():
        acc = holders.setdefault(o, {})
        for labels, d in rows:
            h = holder_name(labels)
            acc[h] = acc.get(h, 0.0) + d

    if owners is None:
        seen: set[Owner] = set()
        for m in (runq_sum, thr, psi_mem, psi_io, majflt, oom, disk_sum, retrans, rtt_n, sys_n):
            seen.update(m)
        owners = seen
    out: dict[Owner, list[Finding]] = {}
    for o in owners:
        out[o] = [
            _cpu(win, runq_sum.get(o, 0.0), runq_n.get(o, 0.0), thr.get(o, 0.0),
                 periods.get(o, 0.0), thr_periods.get(o, 0.0), psi_cpu.get(o, 0.0),
                 holders.get(o, {})),
            _memory(win, psi_mem.get(o, 0.0), psi_mem_full.get(o, 0.0), majflt.get(o, 0.0)),
            _io(win, psi_io.get(o, 0.0), disk_sum.get(o, 0.0), disk_n.get(o, 0.0),
                disk_by.get(o, {})),
            _syscalls(win, sys_sum.get(o, {}), sys_n.get(o, {}), sys_err.get(o, {})),
            _tcp(win, retrans.get(o, {}), rtt_sum.get(o, 0.0), rtt_n.get(o, 0.0)),
            _oom(win, oom.get(o, 0.0)),
        ]
    return out


def _by_labels(win: Window, sample: str, names: tuple[str, ...]) -> dict[Owner, dict[str, float]]:
    out: dict[Owner, dict[str, float]] = {}
    for o, rows in win.deltas(sample).items():
        acc = out.setdefault(o, {})
        for labels, d in rows:
            dl = dict(labels)
            k = " ".join(dl.get(n, "?") for n in names)
            acc[k] = acc.get(k, 0.0) + d
    return out


def _missing(win: Window, *families: str) -> list[str]:
    return [f for f in families if not win.has(f)]


def _share_text(shares: dict[str, float], top: int = 3) -> tuple[list[tuple[str, float]], str]:
    total = sum(shares.values())
    if total <= 0:
        return [], ""
    ranked = sorted(shares.items(), key=lambda kv: -kv[1])
    named = [(k, v / total) for k, v in ranked]
    text = ", ".join(f"{k} {share:.0%}" for k, share in named[:top])
    return named, text


def _cpu(win: Window, runq: float, waits: float, thr: float, periods: float,
         thr_periods: float, psi: float, holders: dict[str, float]) -> Finding:
    missing = _missing(win, RUNQ, THROTTLED)
    f = Finding("cpu", "CPU starvation", None, missing=missing)
    if len(missing) == 2:
        f.available = False
        if win.has(PSI_CPU):  # no eBPF nor cpu.stat: PSI alone still says it waited
            f.seconds = psi
            f.available = True
            f.summary = f"{fmt_seconds(psi)} (cpu pressure)"
        return f
    f.seconds = runq + thr
    f.summary = f"{fmt_seconds(f.seconds)} = waiting for a CPU {fmt_seconds(runq)} + " \
                f"throttled by quota {fmt_seconds(thr)}"
    if RUNQ not in missing:
        wait = f"waited {int(waits)} times"
        if waits:
            wait += f", mean {fmt_seconds(runq / waits)}"
        f.parts.append(wait)
    if win.has(HOLDER):
        f.culprits, text = _share_text(holders)
        if text:
            f.parts.append(f"behind: {text}")
    elif RUNQ not in missing:
        f.missing.append(HOLDER)
    if THROTTLED not in missing and periods:
        f.parts.append(f"throttled in {int(thr_periods)} of {int(periods)} quota periods")
    return f


def _memory(win: Window, psi: float, full: float, majflt: float) -> Finding:
    missing = _missing(win, PSI_MEM, MAJFLT)
    f = Finding("memory", "memory stalls", None, missing=missing)
    if len(missing) == 2:
        f.available = False
        return f
    if PSI_MEM not in missing:
        f.seconds = psi
        f.summary = f"{fmt_seconds(psi)} (memory pressure, some)"
        if full:
            f.parts.append(f"all tasks stalled {fmt_seconds(full)}")
    if MAJFLT not in missing:
        f.count = majflt
        f.parts.append(f"{int(majflt)} major page faults")
        if f.seconds is None:
            f.summary = f"{int(majflt)} major page faults"
    return f


def _io(win: Window, psi: float, disk: float, n: float, by: dict[str, float]) -> Finding:
    missing = _missing(win, PSI_IO, DISK)
    f = Finding("io", "I/O stalls", None, missing=missing)
    if len(missing) == 2:
        f.available = False
        return f
    if PSI_IO not in missing:
        f.seconds = psi
        f.summary = f"{fmt_seconds(psi)} (io pressure, some)"
    if DISK not in missing:
        if f.seconds is None:  # block time is the best estimate left
            f.seconds = disk
            f.summary = f"{fmt_seconds(disk)} of block I/O"
        if n:
            _, text = _share_text(by, top=2)
            f.parts.append(f"block I/O {int(n)} requests, mean {fmt_seconds(disk / n)}"
                           + (f" ({text})" if text else ""))
        else:
            f.parts.append("no block I/O")
    return f


def _syscalls(win: Window, lat: dict[str, float], n: dict[str, float],
              err: dict[str, float]) -> Finding:
    missing = _missing(win, SYS_LAT, SYS_ERR)
    f = Finding("syscalls", "time in syscalls", None, missing=missing)
    if SYS_LAT in missing:
        f.available = False
        return f
    busy = {k: v for k, v in lat.items() if k not in IDLE_SYSCALLS}
    idle = sum(v for k, v in lat.items() if k in IDLE_SYSCALLS)
    f.seconds = sum(busy.values())
    f.summary = fmt_seconds(f.seconds)
    ranked = sorted(busy.items(), key=lambda kv: -kv[1])[:3]
    if ranked:
        f.parts.append(", ".join(
            f"{k} {fmt_seconds(v)} ({int(n.get(k, 0))} calls, mean {fmt_seconds(v / n[k])})"
            if n.get(k) else f"{k} {fmt_seconds(v)}" for k, v in ranked))
    if idle:
        f.parts.append(f"{fmt_seconds(idle)} waiting for work (epoll/poll/sleep, not ranked)")
    errors = sum(err.values())
    f.count = errors
    if errors:
        top = ", ".join(f"{k} {int(v)}" for k, v in sorted(err.items(), key=lambda kv: -kv[1])[:3])
        f.parts.append(f"{int(errors)} errors ({top})")
    return f


def _tcp(win: Window, causes: dict[str, float], rtt: float, rtt_n: float) -> Finding:
    missing = _missing(win, RETRANS, RTT)
    f = Finding("tcp", "TCP", None, missing=missing)
    if len(missing) == 2:
        f.available = False
        return f
    total = sum(causes.values())
    f.count = total
    if RETRANS not in missing:
        split = ", ".join(f"{k} {int(v)}" for k, v in sorted(causes.items(), key=lambda kv: -kv[1])
                          if k)
        f.summary = f"{int(total)} retransmits" + (f" ({split})" if split else "")
    if RTT not in missing:
        f.parts.append(f"RTT mean {fmt_seconds(rtt / rtt_n)} over {int(rtt_n)} samples"
                       if rtt_n else "no RTT samples")
    return f


def _oom(win: Window, kills: float) -> Finding:
    f = Finding("oom", "OOM kills", None, missing=_missing(win, OOM))
    if f.missing:
        f.available = False
        return f
    f.count = kills
    f.summary = f"{int(kills)} processes killed" if kills else "none"
    return f


def ranked(findings: list[Finding]) -> list[Finding]:
    """Top first: OOM kills when any (nothing costs more), then by time cost, then the
    count-only findings with counts, then the quiet ones; unavailable ones last."""
    def key(f: Finding) -> tuple[int, float]:
        if not f.available:
            return (4, 0.0)
        if f.key == "oom" and f.count:
            return (0, -f.count)
        if f.seconds:
            return (1, -f.seconds)
        if f.count:
            return (2, -f.count)
        return (3, 0.0)
    return sorted(findings, key=key)

"""The issue's targets, judged against one run's results: met, missed (by how much,
and what would close it) or not measured (and why)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MB = 1_000_000
MIB = 1024 * 1024
FLOOR_RATIO = 3.0
"""cycle CPU <= 3x the C floor of the same files (issue 18)"""
RSS_MIB = 100
RSS_IDLE_MIB = 60
RSS_K8S_MIB = 80
K8S_PODS = 110
MAP_BYTES = 8 * MB
STARTUP_S = 2.0
TARGET_CGROUPS = 1000


@dataclass(frozen=True, slots=True)
class Verdict:
    target: str
    status: str  # met | missed | not measured
    measured: str
    limit: str
    gap: str = ""
    closing: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"target": self.target, "status": self.status, "measured": self.measured,
                "limit": self.limit, "gap": self.gap, "closing": self.closing}


def _ratio(slow: dict[str, Any], cfg: str, workload: str, key: str = "ratio") -> float | None:
    c = slow.get(cfg)
    if not c or c.get("down"):
        return None
    r = (c["workloads"].get(workload) or {}).get(key)
    return float(r["median"]) if r else None


def _slowdown(slow: dict[str, Any], kpod: str, peer: str, hint: str) -> Verdict:
    name = f"sched-pipe slowdown {kpod} <= {peer}'s"
    a, b = _ratio(slow, kpod, "sched-pipe"), _ratio(slow, peer, "sched-pipe")
    if a is None or b is None:
        why = [f"{n} {(slow.get(n) or {}).get('down') or 'not run'}"
               for n, v in ((kpod, a), (peer, b)) if v is None]
        return Verdict(name, "not measured", "", "", closing="; ".join(why))
    measured, limit = f"{(a - 1) * 100:+.1f}%", f"{(b - 1) * 100:+.1f}%"
    ca, cb = (_ratio(slow, kpod, "sched-pipe", "cpu_ratio"),
              _ratio(slow, peer, "sched-pipe", "cpu_ratio"))
    if ca is not None and cb is not None:  # the steadier CPU-time view, for the reader
        measured += f" (CPU {(ca - 1) * 100:+.1f}%)"
        limit += f" (CPU {(cb - 1) * 100:+.1f}%)"
    if a <= b:
        return Verdict(name, "met", measured, limit, gap=f"{(b - a) * 100:.1f} pp under")
    return Verdict(name, "missed", measured, limit, gap=f"{(a - b) * 100:.1f} pp over",
                   closing=hint)


def _switch_cost(kcost: dict[str, Any]) -> Verdict:
    name = "ns per sched_switch event <= runqlat's program"
    rows = kcost.get("programs", []) if kcost else []

    def pick(owner_prefix: str) -> dict[str, Any] | None:
        for r in rows:
            if r["owner"].startswith(owner_prefix) and "switch" in r["program"] \
                    and r.get("ns_per_event"):
                return dict(r)
        return None

    ours, theirs = pick("kpod-"), pick("runqlat")
    if ours is None or theirs is None:
        return Verdict(name, "not measured", "", "",
                       closing="no sched_switch program with events for "
                               + ("kpod-metrics" if ours is None else "runqlat"))
    a, b = float(ours["ns_per_event"]), float(theirs["ns_per_event"])
    m = f"{a:.0f} ns ({ours['program']})"
    lim = f"{b:.0f} ns ({theirs['program']})"
    if a <= b:
        return Verdict(name, "met", m, lim, gap=f"{b - a:.0f} ns under")
    return Verdict(name, "missed", m, lim, gap=f"{a - b:.0f} ns ({a / b - 1:+.0%}) over",
                   closing="the program does more per switch than runqlat (per-cgroup LRU "
                           "lookup, context-switch counters, health counters): a per-CPU "
                           "LRU map removes the shared-bucket contention, and counting "
                           "switches from cpu.stat / schedstat instead of the hook would "
                           "leave only the latency histogram in the hot path")


def _at(scale: list[dict[str, Any]], profile: str, n: int = TARGET_CGROUPS) -> dict[str, Any] | None:
    for r in scale:
        if r.get("profile") == profile and r.get("cgroups") == n and not r.get("error"):
            return r
    return None


def _hot(row: dict[str, Any]) -> str:
    spy = row.get("pyspy") or {}
    frames = [f"{f['frame']} {f['share_of_busy']:.0%}" for f in (spy.get("self") or [])[:4]]
    return ("py-spy hot spots (self time): " + "; ".join(frames)) if frames else ""


def _cycle_cpu(scale: list[dict[str, Any]]) -> Verdict:
    name = (f"cycle CPU <= {FLOOR_RATIO:g}x the C floor of its files at "
            f"{TARGET_CGROUPS:,} cgroups, standard")
    lim = f"{FLOOR_RATIO:g}x"
    r = _at(scale, "standard")
    fl = (r or {}).get("floor") or {}
    if r is None or r.get("cpu_per_cycle_s") is None or not fl.get("ratio"):
        why = fl.get("error") or (
            f"no standard run at {TARGET_CGROUPS} cgroups (quick mode?)" if r is None else
            "this run has no C floor figure (it predates benchmarks/floor.py)")
        return Verdict(name, "not measured", "", lim, closing=str(why))
    v, ratio = float(r["cpu_per_cycle_s"]), float(fl["ratio"])
    floor = float(fl["floor_cpu_per_cycle_s"])
    m = (f"{ratio:.1f}x ({v * 1e3:.0f} ms against {floor * 1e3:.1f} ms for "
         f"{fl['opens_per_cycle']:,.0f} files)")
    if ratio <= FLOOR_RATIO:
        return Verdict(name, "met", m, lim, gap=f"{FLOOR_RATIO - ratio:.1f}x under")
    coll = r.get("collector_s") or {}
    worst = sorted(coll.items(), key=lambda kv: -kv[1])[:3]
    hot = _hot(r)
    return Verdict(name, "missed", m, lim, gap=f"{ratio - FLOOR_RATIO:.1f}x over",
                   closing=f"the floor only opens and reads; the agent also turns "
                           f"{r.get('series', 0):,} series a cycle into an exposition. "
                           "Slowest collectors (wall): "
                           + ", ".join(f"{c} {t * 1e3:.0f} ms" for c, t in worst)
                           + (". " + hot if hot else ""))


def _rss(scale: list[dict[str, Any]]) -> Verdict:
    name = f"RSS <= {RSS_MIB} MiB at {TARGET_CGROUPS:,} cgroups"
    rows = [r for r in scale if r.get("cgroups") == TARGET_CGROUPS and r.get("rss_kib")]
    if not rows:
        return Verdict(name, "not measured", "", f"{RSS_MIB} MiB",
                       closing=f"no run at {TARGET_CGROUPS} cgroups (quick mode?)")
    worst = max(rows, key=lambda r: r["rss_kib"])
    v = worst["rss_kib"] / 1024
    m = f"{v:.0f} MiB ({worst['profile']})"
    if v <= RSS_MIB:
        return Verdict(name, "met", m, f"{RSS_MIB} MiB", gap=f"{RSS_MIB - v:.0f} MiB under")
    small = min((r for r in scale if r.get("profile") == worst["profile"] and r.get("rss_kib")
                 and r.get("series")), key=lambda r: r["cgroups"], default=None)
    per = ""
    if small is not None and worst.get("series", 0) > small["series"]:
        kib = (worst["rss_kib"] - small["rss_kib"]) / (worst["series"] - small["series"])
        per = (f"RSS grows by ~{kib * 1024:.0f} B per exported series "
               f"({worst['series']:,} series at {TARGET_CGROUPS:,} cgroups, "
               f"{worst['series'] / TARGET_CGROUPS:.0f} per cgroup) over a base of "
               f"{small['rss_kib'] / 1024:.0f} MiB; ")
    return Verdict(name, "missed", m, f"{RSS_MIB} MiB", gap=f"{v - RSS_MIB:.0f} MiB over",
                   closing=per + "fewer series per pod (histograms only where they matter, "
                   "per-syscall series only for syscalls a pod used), a leaner per-series "
                   "store and a smaller interpreter base (lazy imports) would close it")


def _rss_small(rss: dict[str, Any], key: str, name: str, limit: int) -> Verdict:
    got = rss.get(key) or {}
    if not got.get("VmRSS"):
        return Verdict(name, "not measured", "", f"{limit} MiB",
                       closing=str(got.get("error") or "no rss phase in this run"))
    v = got["VmRSS"] / 1024
    m = f"{v:.1f} MiB (peak {got.get('VmHWM', 0) / 1024:.1f})"
    if v <= limit:
        return Verdict(name, "met", m, f"{limit} MiB", gap=f"{limit - v:.1f} MiB under")
    return Verdict(name, "missed", m, f"{limit} MiB", gap=f"{v - limit:.1f} MiB over",
                   closing="imports and the interpreter base: see benchmarks/agent_rss.py")


def _maps(slow: dict[str, Any]) -> Verdict:
    name = "kernel map memory <= 8 MB with defaults"
    sums = {c["profile"]: sum(int(m.get("bytes_memlock") or 0) for m in c.get("maps", []))
            for c in slow.values() if c.get("kind") == "kpod" and c.get("maps")}
    if not sums:
        return Verdict(name, "not measured", "", "8 MB", closing="no agent ran")
    prof = max(sums, key=lambda p: sums[p])
    v = sums[prof]
    m = f"{v / MB:.2f} MB ({prof})"
    if v <= MAP_BYTES:
        return Verdict(name, "met", m, "8 MB", gap=f"{(MAP_BYTES - v) / MB:.2f} MB under")
    maps = sorted(slow[f"kpod-{prof}"]["maps"], key=lambda x: -int(x.get("bytes_memlock") or 0))
    big = "; ".join(f"{x['name']} {int(x['bytes_memlock']) / MB:.2f} MB "
                    f"({x['type']}, {x['max_entries']} entries)" for x in maps[:4])
    # plain hashes are preallocated unless BPF_F_NO_PREALLOC (flag 1); LRU ones always are
    prealloc = [x for x in maps if x.get("type") == "hash" and not int(x.get("flags") or 0) & 1]
    saved = sum(int(x["bytes_memlock"] or 0) for x in prealloc)
    scratch = (f"; the preallocated per-task scratch hashes ({', '.join(x['name'] for x in prealloc)}"
               f", {saved / MB:.2f} MB) as BPF_F_NO_PREALLOC or task storage would cost only "
               f"their live entries, leaving {(v - saved) / MB:.2f} MB") if prealloc else ""
    return Verdict(name, "missed", m, "8 MB", gap=f"{(v - MAP_BYTES) / MB:.2f} MB over",
                   closing=f"largest maps: {big}{scratch}. Also: default max_entries sized "
                           "to pods per node, fewer histogram slots per value")


def _startup(slow: dict[str, Any]) -> Verdict:
    name = "first metrics <= 2 s after start"
    med: dict[str, float] = {}
    for c in slow.values():
        xs = sorted(c.get("startup_s") or [])
        if c.get("kind") == "kpod" and xs:
            med[c["profile"]] = xs[len(xs) // 2]
    if not med:
        return Verdict(name, "not measured", "", "2 s", closing="no agent ran")
    prof = max(med, key=lambda p: med[p])
    v = med[prof]
    m = f"{v:.2f} s ({prof}, median)"
    if v <= STARTUP_S:
        return Verdict(name, "met", m, "2 s", gap=f"{STARTUP_S - v:.2f} s under")
    return Verdict(name, "missed", m, "2 s", gap=f"{v - STARTUP_S:.2f} s over",
                   closing="imports (OTel SDK, aiohttp) and BPF load/verify dominate: lazy "
                           "imports, loading the objects concurrently, serving /readyz after "
                           "the first cycle of the fast collectors")


def evaluate(results: dict[str, Any]) -> list[Verdict]:
    slow = results.get("slowdown") or {}
    return [
        _slowdown(slow, "kpod-standard", "peer-runqlat",
                  "per-event work in sched_switch/sched_wakeup (see the kernel cost table): "
                  "per-CPU maps, dropping the per-switch counters, or sampling wake-ups"),
        _slowdown(slow, "kpod-comprehensive", "peer-syscount-L",
                  "syscall enter/exit hooks fire on every syscall: filter to pod cgroups "
                  "in the kernel, sample, or keep counts only (no latency) by default"),
        _switch_cost(results.get("kernel_cost") or {}),
        _cycle_cpu(results.get("scale") or []),
        _rss(results.get("scale") or []),
        _rss_small(results.get("rss") or {}, "standalone_idle",
                   f"RSS <= {RSS_IDLE_MIB} MiB idle, standalone", RSS_IDLE_MIB),
        _rss_small(results.get("rss") or {}, "kubernetes",
                   f"RSS <= {RSS_K8S_MIB} MiB in Kubernetes mode with {K8S_PODS} pods",
                   RSS_K8S_MIB),
        _maps(slow),
        _startup(slow),
    ]

"""Workload slowdown: baseline vs kpod-metrics per profile vs each peer, interleaved.

Every round runs every configuration once, in an order rotated (and reversed on odd
rounds) so slow drift of the machine lands on all of them alike; the slowdown of a
configuration is the median over rounds of cost/baseline of the *same* round.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from benchmarks import bpfinfo, procs
from benchmarks.peers import Peer
from benchmarks.stats import ratios, summarize
from benchmarks.workloads import Workload, WorkloadError


@dataclass
class Config:
    name: str
    kind: str  # baseline | kpod | peer
    profile: str = ""
    peer: Peer | None = None
    down: str = ""
    costs: dict[str, list[float]] = field(default_factory=dict)
    cpu_costs: dict[str, list[float]] = field(default_factory=dict)
    startup_s: list[float] = field(default_factory=list)
    collectors: dict[str, dict[str, object]] = field(default_factory=dict)
    maps: list[dict[str, object]] = field(default_factory=list)
    programs: list[str] = field(default_factory=list)


def configs(profiles: list[str], peers: list[Peer]) -> list[Config]:
    out = [Config("baseline", "baseline")]
    out += [Config(f"kpod-{p}", "kpod", profile=p) for p in profiles]
    out += [Config(f"peer-{p.name}", "peer", peer=p) for p in peers]
    return out


def _order(cfgs: list[Config], rnd: int) -> list[Config]:
    k = rnd % len(cfgs)
    rotated = cfgs[k:] + cfgs[:k]
    return rotated[::-1] if rnd % 2 else rotated


def _map_rows(held: bpfinfo.ProcBpf) -> list[dict[str, object]]:
    allmaps = bpfinfo.maps()
    rows = []
    for mid in sorted(held.map_ids):
        m = allmaps.get(mid)
        if m:
            rows.append({k: m.get(k) for k in ("id", "name", "type", "flags", "bytes_key",
                                               "bytes_value", "max_entries", "bytes_memlock")})
    return rows


def _attach(reg: procs.Registry, cfg: Config, poll: float) -> list[procs.Managed]:
    if cfg.kind == "baseline":
        return []
    if cfg.kind == "kpod":
        agent = procs.start_agent(reg, cfg.profile, poll)
        try:
            assert agent.startup_s is not None
            cfg.startup_s.append(agent.startup_s)
            if not cfg.collectors:
                cfg.collectors = agent.collectors(agent.scrape())
                cfg.maps = _map_rows(agent.m.bpf)
                progs = bpfinfo.programs()
                cfg.programs = sorted(str(progs[i].get("name", i)) for i in agent.m.bpf.prog_ids
                                      if i in progs)
        except Exception:
            agent.stop()
            raise
        return [agent.m]
    assert cfg.peer is not None
    m = reg.spawn(f"peer-{cfg.peer.name}", list(cfg.peer.argv))
    held = procs.wait_bpf_settled(reg, m)
    if not m.alive() or not held.prog_ids:
        reg.stop(m)
        raise RuntimeError(f"{cfg.peer.argv[0]} did not attach: {m.log_tail(3)}")
    return [m]


def run(reg: procs.Registry, cfgs: list[Config], workloads: list[Workload], rounds: int,
        poll: float) -> None:
    for rnd in range(rounds):
        for cfg in _order(cfgs, rnd):
            if cfg.down:
                continue
            t0 = time.monotonic()
            try:
                attached = _attach(reg, cfg, poll)
            except Exception as exc:
                cfg.down = str(exc)
                print(f"  {cfg.name}: down ({exc})", file=sys.stderr)
                continue
            try:
                time.sleep(0.3)  # let start-up work settle before timing
                for w in workloads:
                    try:
                        cost = w.run()
                        wall, cpu = cost.wall_ns, cost.cpu_ns
                    except WorkloadError as exc:
                        print(f"  {w.name} under {cfg.name}: {exc}", file=sys.stderr)
                        wall = cpu = float("nan")
                    cfg.costs.setdefault(w.name, []).append(wall)
                    cfg.cpu_costs.setdefault(w.name, []).append(cpu)
                for m in attached:
                    if not m.alive():
                        cfg.down = f"exited during the round: {m.log_tail(3)}"
            finally:
                for m in attached:
                    reg.stop(m)
            print(f"  round {rnd + 1}/{rounds} {cfg.name:<22} {time.monotonic() - t0:5.1f}s",
                  file=sys.stderr)


def results(cfgs: list[Config], workloads: list[Workload]) -> dict[str, object]:
    base = next(c for c in cfgs if c.kind == "baseline")
    out: dict[str, object] = {}
    for c in cfgs:
        per_w: dict[str, object] = {}
        for w in workloads:
            costs = c.costs.get(w.name, [])
            cpu = c.cpu_costs.get(w.name, [])
            s = summarize(costs)
            r = summarize(ratios(costs, base.costs.get(w.name, [])))
            rc = summarize(ratios(cpu, base.cpu_costs.get(w.name, [])))
            per_w[w.name] = {
                "unit": w.unit,
                "ns_per_op": s.as_dict() if s else None,
                "ratio": r.as_dict() if r and c is not base else None,
                "cpu_ratio": rc.as_dict() if rc and c is not base else None,
                "raw_ns_per_op": costs,
                "raw_cpu_ns_per_op": cpu,
            }
        out[c.name] = {
            "kind": c.kind, "profile": c.profile,
            "peer": c.peer.name if c.peer else "", "peer_note": c.peer.note if c.peer else "",
            "compares_with": c.peer.compares_with if c.peer else "",
            "down": c.down, "workloads": per_w, "startup_s": c.startup_s,
            "collectors": c.collectors, "maps": c.maps, "programs": c.programs,
        }
    return out

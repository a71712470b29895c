"""In-kernel cost per event: run time and run count of every BPF program.

The agent (comprehensive profile: the superset of its programs) and every peer that
attaches run side by side, so all programs see the same events; statistics are on only
while the workloads run (`bpfinfo.stats_enabled`) and the delta of run_time_ns and
run_cnt per program gives ns per event.

Attach order matters: on a shared tracepoint the program that runs first takes the
cache misses on the task and its maps, and the next one finds them warm (measured
here: ~90-140 ns per sched_switch event either way). So the measurement runs twice,
agent first and peers first, and reports the sum over both orders.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from benchmarks import bpfinfo, procs
from benchmarks.peers import Peer
from benchmarks.workloads import Workload, WorkloadError


@dataclass(frozen=True, slots=True)
class Owned:
    owner: str
    prog_ids: frozenset[int]


def _snap(ids: set[int]) -> dict[int, tuple[int, int, str]]:
    progs = bpfinfo.programs()
    out = {}
    for i in ids:
        p = progs.get(i)
        if p is not None:
            out[i] = (int(p.get("run_time_ns", 0) or 0), int(p.get("run_cnt", 0) or 0),  # type: ignore[call-overload]
                      str(p.get("name", i)))
    return out


def run(reg: procs.Registry, peers: list[Peer], workloads: list[Workload], poll: float,
        profile: str = "comprehensive") -> dict[str, object]:
    """Both attach orders; per (owner, program) the run time and count summed over them."""
    orders = [_run_once(reg, peers, workloads, poll, profile, agent_first=first)
              for first in (True, False)]
    merged: dict[tuple[str, str], dict[str, object]] = {}
    for label, res in zip(("agent_first", "peers_first"), orders, strict=True):
        for row in res["programs"]:  # type: ignore[attr-defined]
            key = (row["owner"], row["program"])
            m = merged.setdefault(key, {"owner": row["owner"], "program": row["program"],
                                        "prog_id": row["prog_id"], "run_time_ns": 0,
                                        "run_cnt": 0, "by_order": {}})
            m["run_time_ns"] += row["run_time_ns"]  # type: ignore[operator]
            m["run_cnt"] += row["run_cnt"]  # type: ignore[operator]
            m["by_order"][label] = row["ns_per_event"]  # type: ignore[index]
    for m in merged.values():
        cnt = m["run_cnt"]
        m["ns_per_event"] = m["run_time_ns"] / cnt if cnt else None  # type: ignore[operator]
    out = dict(orders[0])
    out["programs"] = list(merged.values())
    out["peers_down"] = {**orders[0]["peers_down"], **orders[1]["peers_down"]}  # type: ignore[dict-item]
    out["attach_orders"] = ["agent_first", "peers_first"]
    return out


def _run_once(reg: procs.Registry, peers: list[Peer], workloads: list[Workload], poll: float,
              profile: str, agent_first: bool) -> dict[str, object]:
    owners: list[Owned] = []
    down: dict[str, str] = {}
    started: list[procs.Managed] = []
    try:
        if agent_first:
            agent = procs.start_agent(reg, profile, poll, tag="-kcost")
            started.append(agent.m)
            owners.append(Owned(f"kpod-{profile}", agent.m.bpf.prog_ids))
        for p in peers:
            m = reg.spawn(f"peer-{p.name}-kcost", list(p.argv))
            held = procs.wait_bpf_settled(reg, m)
            if not m.alive() or not held.prog_ids:
                down[p.name] = f"did not attach: {m.log_tail(3)}"
                reg.stop(m)
                continue
            started.append(m)
            owners.append(Owned(p.name, held.prog_ids))
        if not agent_first:
            agent = procs.start_agent(reg, profile, poll, tag="-kcost")
            started.append(agent.m)
            owners.insert(0, Owned(f"kpod-{profile}", agent.m.bpf.prog_ids))
        ids = {i for o in owners for i in o.prog_ids}
        per_workload: dict[str, dict[int, tuple[int, int]]] = {}
        with bpfinfo.stats_enabled() as how:
            first = _snap(ids)
            prev = first
            for w in workloads:
                try:
                    w.run()
                except WorkloadError as exc:
                    print(f"  kernel cost: {w.name}: {exc}", file=sys.stderr)
                cur = _snap(ids)
                per_workload[w.name] = {
                    i: (cur[i][0] - prev[i][0], cur[i][1] - prev[i][1]) for i in cur if i in prev
                }
                prev = cur
        names = {i: v[2] for i, v in prev.items()}
    finally:
        for m in started:
            reg.stop(m)
    rows = []
    for o in owners:
        for i in sorted(o.prog_ids):
            if i not in names:
                continue
            total_ns = sum(per_workload[w][i][0] for w in per_workload if i in per_workload[w])
            total_cnt = sum(per_workload[w][i][1] for w in per_workload if i in per_workload[w])
            rows.append({
                "owner": o.owner, "prog_id": i, "program": names[i],
                "run_time_ns": total_ns, "run_cnt": total_cnt,
                "ns_per_event": total_ns / total_cnt if total_cnt else None,
                "by_workload": {
                    w: {"run_time_ns": d[i][0], "run_cnt": d[i][1],
                        "ns_per_event": d[i][0] / d[i][1] if d[i][1] else None}
                    for w, d in per_workload.items() if i in d
                },
            })
    return {"stats_enabled_via": how, "programs": rows, "peers_down": down,
            "stats_sysctl_after": bpfinfo.stats_sysctl_value()}

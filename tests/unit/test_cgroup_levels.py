"""The pod-level rule over many cycles: a pod cgroup and its containers come and go
(restarts under new ids, CrashLoopBackOff gaps with no container, an init container,
deaths right after unread growth), with hierarchical files written as the kernel keeps
them (a removed child's totals stay in its parent).

Checked every cycle, through the real collectors and the real SeriesStore, against the
simulated kernel's own pod totals (the oracle, computed independently of the agent):
`sum by (pod)` of each additive counter equals the pod cgroup's own total (so never
exceeds it), no series ever goes down, levels sum to the pod's level, a dead
container's level is not exported, and non-additive families (PSI) at pod level are
the pod cgroup's own value.
"""

from __future__ import annotations

import itertools
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kpodmetrics.collectors.base import CollectContext
from kpodmetrics.collectors.files import cpu_stat, io_stat, memory, pressure
from kpodmetrics.export.store import SeriesStore
from kpodmetrics.pods.owner import CgroupRef, Owner

UID = "0f1e2d3c-0000-4000-8000-000000000001"
ADDITIVE = ("kpod_cpu_usage_seconds_total", "kpod_disk_read_bytes_total",
            "kpod_mem_cgroup_major_page_faults_total")


@dataclass
class Cg:
    """One simulated cgroup: its own usage (not its children's)."""

    id: int
    path: Path
    name: str
    cpu_usec: int = 0
    rbytes: int = 0
    majflt: int = 0
    mem: int = 0
    psi_usec: int = 0


@dataclass
class SimPod:
    root: Path
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(5000))
    pod: Cg = field(init=False)
    live: dict[str, Cg] = field(default_factory=dict)
    dead: Cg = field(init=False)
    """What removed children left in the pod's hierarchical totals."""
    owners: dict[int, Owner] = field(default_factory=dict)
    unlisted: dict[str, int] = field(default_factory=dict)
    """Containers running but not yet named by the API (no target), for n more cycles."""

    def __post_init__(self) -> None:
        self.pod = Cg(next(self.ids), self.root / "pod", "")
        self.pod.path.mkdir(parents=True)
        self.dead = Cg(0, self.root, "dead")
        self.owners[self.pod.id] = self.owner("")

    def owner(self, name: str) -> Owner:
        return Owner(f"{UID}/{name}", (("namespace", "ns"), ("pod", "web-0"),
                                       ("container", name)))

    def start(self, name: str) -> None:
        cid = next(self.ids)
        cg = Cg(cid, self.pod.path / f"ctr-{cid}", name)
        cg.path.mkdir()
        self.live[name] = cg
        self.owners[cid] = self.owner(name)

    def kill(self, name: str) -> None:
        cg = self.live.pop(name)
        for f in ("cpu_usec", "rbytes", "majflt", "psi_usec"):
            setattr(self.dead, f, getattr(self.dead, f) + getattr(cg, f))
        shutil.rmtree(cg.path)  # the runtime removes the directory at once

    def totals(self) -> Cg:
        """The pod cgroup's hierarchical files: itself + live children + dead ones."""
        t = Cg(self.pod.id, self.pod.path, "")
        for f in ("cpu_usec", "rbytes", "majflt", "mem"):
            setattr(t, f, getattr(self.pod, f) + getattr(self.dead, f)
                    + sum(getattr(c, f) for c in self.live.values()))
        t.psi_usec = self.pod.psi_usec  # a stall of the pod, not a sum of stalls
        return t

    def write(self) -> None:
        for cg in [self.totals(), *self.live.values()]:
            (cg.path / "cpu.stat").write_text(
                f"usage_usec {cg.cpu_usec}\nuser_usec {cg.cpu_usec}\nsystem_usec 0\n")
            (cg.path / "io.stat").write_text(
                f"8:0 rbytes={cg.rbytes} wbytes=0 rios=0 wios=0\n" if cg.rbytes else "")
            (cg.path / "memory.current").write_text(f"{cg.mem}\n")
            (cg.path / "memory.stat").write_text(f"anon 0\nfile 0\npgmajfault {cg.majflt}\n")
            (cg.path / "cpu.pressure").write_text(
                f"some avg10=0.00 avg60=0.00 avg300=0.00 total={cg.psi_usec}\n")

    def targets(self) -> list[CgroupRef]:
        refs = [CgroupRef(self.pod.id, str(self.pod.path), self.owners[self.pod.id],
                          pod_key=UID, pod_level=True)]
        refs += [CgroupRef(c.id, str(c.path), self.owners[c.id], pod_key=UID)
                 for name, c in self.live.items() if self.unlisted.get(name, 0) <= 0]
        return refs


class SimResolver:
    owner_label_names = ("namespace", "pod", "container")

    def __init__(self, sim: SimPod) -> None:
        self.sim = sim

    def refresh(self) -> None: ...

    def resolve(self, cgroup_id: int) -> Owner | None:
        return self.sim.owners.get(cgroup_id)  # dead ids too (they stay resolvable)

    def ignored(self, cgroup_id: int) -> bool:
        return False

    def targets(self) -> list[CgroupRef]:
        return self.sim.targets()

    def drain_removed(self) -> list[Owner]:
        return []


class Agent:
    def __init__(self, sim: SimPod) -> None:
        self.sim = sim
        self.store = SeriesStore()
        self.resolver = SimResolver(sim)
        self.collectors = [cpu_stat.CpuStatCollector(),
                           io_stat.DiskIOCollector(sys_root=str(sim.root / "nosys")),
                           memory.MemoryCollector(), pressure.PressureCollector()]

    def cycle(self) -> CollectContext:
        ctx = CollectContext(targets=self.sim.targets(), cgroup_root=str(self.sim.root))
        samples = [s for c in self.collectors for s in c.collect(ctx)]
        self.store.apply(samples, self.resolver)
        return ctx

    def series(self, family: str) -> dict[str, float]:
        return {dict(s.labels)["container"]: s.value
                for fam, rows in self.store.snapshot() if fam.name == family for s in rows}


def pod_total(t: Cg, family: str) -> float:
    return {"kpod_cpu_usage_seconds_total": t.cpu_usec / 1e6,
            "kpod_disk_read_bytes_total": float(t.rbytes),
            "kpod_mem_cgroup_major_page_faults_total": float(t.majflt)}[family]


@pytest.mark.parametrize("seed", range(4))
def test_pod_and_containers_come_and_go_without_double_counting(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    sim = SimPod(tmp_path)
    agent = Agent(sim)
    sim.start("init")
    down_for: dict[str, int] = {"app": 2, "sidecar": 0}
    before: dict[tuple[str, str], float] = {}
    for cycle in range(100):
        # the kernel moves on: every cgroup uses some CPU, does some I/O, holds memory
        for cg in [sim.pod, *sim.live.values()]:
            cg.cpu_usec += rng.randrange(0, 50_000)
            cg.rbytes += rng.choice((0, 0, 4096, 65536))
            cg.majflt += rng.randrange(0, 3)
            cg.mem = rng.randrange(1 << 20, 64 << 20)
            cg.psi_usec += rng.randrange(0, 1000)
        # deaths (after growth nobody read yet), restarts after a back-off, the init
        # container leaving for good
        if "init" in sim.live and cycle == 3:
            sim.kill("init")
        for name in ("app", "sidecar"):
            if name in sim.live:
                if rng.random() < (0.2 if name == "app" else 0.05):
                    sim.kill(name)
                    down_for[name] = rng.randrange(0, 5)  # 0: restarted at once
            elif cycle >= 3 or name == "sidecar":
                if down_for[name] <= 0:
                    sim.start(name)
                    sim.unlisted[name] = rng.choice((0, 0, 1, 2))  # API not caught up yet
                down_for[name] -= 1
        sim.write()
        ctx = agent.cycle()
        assert ctx.errors == {}
        totals = sim.totals()
        for family in ADDITIVE:
            got = agent.series(family)
            want = pod_total(totals, family)
            assert sum(got.values()) <= want + 1e-6, (cycle, family, got, want)
            assert sum(got.values()) == pytest.approx(want, abs=1e-6), (cycle, family, got)
            for name, v in got.items():
                assert v >= before.get((family, name), 0.0) - 1e-9, (cycle, family, name)
                before[(family, name)] = v
        listed = {n for n in sim.live if sim.unlisted.get(n, 0) <= 0}
        levels = agent.series("kpod_mem_usage_bytes")
        assert sum(levels.values()) == totals.mem
        assert set(levels) == {"", *listed}  # a dead container has no level
        for name in listed:
            assert levels[name] == sim.live[name].mem
        for name in sim.unlisted:
            sim.unlisted[name] -= 1
        assert agent.series("kpod_pressure_cpu_waiting_seconds_total")[""] == \
            pytest.approx(sim.pod.psi_usec / 1e6)


def test_the_issue_example_pod_100_container_90_then_alone_to_160(tmp_path: Path) -> None:
    """A pod of 100 CPU-s whose container has 90 shows 100 in all (not 190); with
    the container gone for longer than the store's reading tracker lives, the pod
    growing to 160 moves the sum to 160 (not 100 -> 260)."""
    sim = SimPod(tmp_path)
    agent = Agent(sim)
    sim.start("app")
    sim.pod.cpu_usec, sim.live["app"].cpu_usec = 10_000_000, 90_000_000
    sim.write()
    agent.cycle()
    assert agent.series("kpod_cpu_usage_seconds_total") == {"": 10.0, "app": 90.0}
    sim.kill("app")
    for _ in range(6):
        sim.pod.cpu_usec += 10_000_000
        sim.write()
        agent.cycle()
    got = agent.series("kpod_cpu_usage_seconds_total")
    assert sum(got.values()) == pytest.approx(160.0)
    assert got == {"": pytest.approx(70.0), "app": 90.0}


def test_a_pod_alone_then_its_first_container(tmp_path: Path) -> None:
    """Before any container the pod's readings pass as they are; its first container
    then moves nothing the pod series already counted."""
    sim = SimPod(tmp_path)
    agent = Agent(sim)
    for n in (1, 2, 3):
        sim.pod.cpu_usec += 10_000_000
        sim.write()
        agent.cycle()
        assert agent.series("kpod_cpu_usage_seconds_total") == {"": pytest.approx(10.0 * n)}
    sim.start("app")
    sim.live["app"].cpu_usec = 5_000_000
    sim.pod.cpu_usec += 10_000_000
    sim.write()
    agent.cycle()
    assert agent.series("kpod_cpu_usage_seconds_total") == {"": pytest.approx(40.0),
                                                             "app": pytest.approx(5.0)}


def test_a_container_that_ran_before_the_api_named_it(tmp_path: Path) -> None:
    """Its first cycle was counted by the pod series (it was in the pod's totals, not
    a target): the container is credited from there on, nothing is counted twice."""
    sim = SimPod(tmp_path)
    agent = Agent(sim)
    sim.start("app")
    sim.unlisted["app"] = 1
    sim.pod.cpu_usec, sim.live["app"].cpu_usec = 10_000_000, 20_000_000
    sim.write()
    agent.cycle()
    assert agent.series("kpod_cpu_usage_seconds_total") == {"": pytest.approx(30.0)}
    sim.unlisted["app"] = 0
    sim.pod.cpu_usec += 10_000_000
    sim.live["app"].cpu_usec += 5_000_000
    sim.write()
    agent.cycle()
    # pod 45 in all: the pod series keeps its 30, app gets the 15 nobody counted yet
    assert agent.series("kpod_cpu_usage_seconds_total") == {"": pytest.approx(30.0),
                                                             "app": pytest.approx(15.0)}
    sim.pod.cpu_usec += 1_000_000
    sim.live["app"].cpu_usec += 5_000_000
    sim.write()
    agent.cycle()
    assert agent.series("kpod_cpu_usage_seconds_total") == {"": pytest.approx(31.0),
                                                             "app": pytest.approx(20.0)}

"""Slow-moving collectors read every N cycles (KPOD_READ_EVERY): in between, their last
reading's levels and kernel totals are exported again, never its increments, and
only for cgroups still listed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest

from kpodmetrics import config, families
from kpodmetrics.collectors import registry
from kpodmetrics.collectors.base import CollectContext, MapHealth, ProgramStatus
from kpodmetrics.config import Settings
from kpodmetrics.families import Family, FamilyType
from kpodmetrics.pods.owner import CgroupRef, Owner
from kpodmetrics.samples import HistogramSample, Kind, Sample
from kpodmetrics.service import Agent, CollectorSlot

LEVEL = families.register(Family("kpod_test_every_level", FamilyType.GAUGE, "test"))[0]
TOTAL = families.register(Family("kpod_test_every_total", FamilyType.COUNTER, "test"))[0]
INCR = families.register(Family("kpod_test_every_incr_total", FamilyType.COUNTER, "test"))[0]


def _ref(cid: int) -> CgroupRef:
    return CgroupRef(cid, f"/cg{cid}", Owner(key=f"/cg{cid}", labels=(("cgroup", f"/cg{cid}"),)))


class Counting:
    families: Sequence[object] = ()

    def __init__(self) -> None:
        self.calls = 0

    def collect(self, ctx: CollectContext) -> Iterable[Sample | HistogramSample]:
        self.calls += 1
        out: list[Sample | HistogramSample] = []
        for ref in ctx.targets:
            out += [Sample(LEVEL, ref.cgroup_id, 10.0 * self.calls, Kind.GAUGE),
                    Sample(TOTAL, ref.cgroup_id, 100.0 * self.calls, Kind.CUMULATIVE),
                    Sample(INCR, ref.cgroup_id, 1.0, Kind.DELTA)]
        return out

    def start(self) -> None: ...
    def close(self) -> None: ...
    def programs(self) -> Sequence[ProgramStatus]: return []
    def map_health(self) -> Sequence[MapHealth]: return []


async def _collect(agent: Agent, targets: list[CgroupRef]) -> list[Sample | HistogramSample]:
    return await agent._collect(agent.slots[0], CollectContext(targets=targets, cgroup_root="/"))


async def test_read_every_third_cycle_re_exports_levels_and_totals_only() -> None:
    agent = Agent(Settings(node_name="n"))
    fake = Counting()
    agent.slots = [CollectorSlot("fs", fake, every=3)]  # type: ignore[arg-type]
    try:
        got = [await _collect(agent, [_ref(1), _ref(2)]) for _ in range(3)]
        assert fake.calls == 1
        assert len(got[0]) == 6  # a real reading: everything, increments included
        for again in got[1:]:  # re-exported: the same level and total, no increment
            assert sorted((s.family.name, s.cgroup_id, s.value) for s in again
                          if isinstance(s, Sample)) == [
                ("kpod_test_every_level", 1, 10.0), ("kpod_test_every_level", 2, 10.0),
                ("kpod_test_every_total", 1, 100.0), ("kpod_test_every_total", 2, 100.0)]
        fourth = await _collect(agent, [_ref(1)])
        assert fake.calls == 2 and {s.cgroup_id for s in fourth} == {1}
        fifth = await _collect(agent, [])  # cgroup 1 gone: nothing of it is re-exported
        assert fifth == [] and fake.calls == 2
    finally:
        agent.worker.close()


async def test_every_cycle_by_default_for_collectors_with_increments() -> None:
    agent = Agent(Settings(node_name="n"))
    fake = Counting()
    agent.slots = [CollectorSlot("cpu", fake)]  # type: ignore[arg-type]
    try:
        for _ in range(3):
            await _collect(agent, [_ref(1)])
        assert fake.calls == 3
    finally:
        agent.worker.close()


def test_defaults_and_overrides() -> None:
    s = Settings()
    assert registry.read_every(s, "fs") == 4 and registry.read_every(s, "iface") == 1
    assert registry.read_every(s, "cpu") == 1
    s = config.load({}, {"KPOD_READ_EVERY": "fs=1,iface=3"})
    assert registry.read_every(s, "fs") == 1 and registry.read_every(s, "iface") == 3
    assert config.check(s) == []


@pytest.mark.parametrize(("text", "problem"), [
    ("cpu=2", "collector 'cpu' is read every cycle (its samples include increments"),
    ("nosuch=2", "unknown collector 'nosuch'"),
])
def test_refused_collectors_are_named(text: str, problem: str) -> None:
    with pytest.raises(config.ConfigError) as err:
        config.load({}, {"KPOD_READ_EVERY": text})
    assert problem in str(err.value)


@pytest.mark.parametrize("text", ["fs", "fs=0", "fs=x", "fs=101"])
def test_bad_values_are_refused(text: str) -> None:
    with pytest.raises(config.ConfigError, match="KPOD_READ_EVERY"):
        config.load({}, {"KPOD_READ_EVERY": text})

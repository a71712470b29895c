"""Per-collector deadlines: an overrunning collector holds neither the others nor the
cycle; its late result is folded once, never lost, and it is not called meanwhile."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable, Sequence

from kpodmetrics import families
from kpodmetrics.collectors.base import CollectContext, MapHealth, ProgramStatus
from kpodmetrics.config import Settings
from kpodmetrics.families import Family, FamilyType
from kpodmetrics.samples import HistogramSample, Kind, Sample
from kpodmetrics.service import STALE_INTERVALS, Agent, CollectorSlot


class Fake:
    families: Sequence[object] = ()

    def __init__(self, name: str, gate: threading.Event | None = None) -> None:
        self.name = name
        self.gate = gate
        self.calls = 0

    def collect(self, ctx: CollectContext) -> Iterable[Sample | HistogramSample]:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait(30)
        ctx.count_error(self.name)
        fam = families.register(Family(f"kpod_test_{self.name}", FamilyType.GAUGE, "test"))[0]
        return [Sample(fam, 0, float(self.calls), Kind.GAUGE)]

    def start(self) -> None: ...
    def close(self) -> None: ...
    def programs(self) -> Sequence[ProgramStatus]: return []
    def map_health(self) -> Sequence[MapHealth]: return []


def _agent(interval: float = 1.0, timeout: float = 0.2) -> Agent:
    return Agent(Settings(poll_interval=interval, collector_timeout=timeout, node_name="n"))


async def _cycle(agent: Agent) -> tuple[list[list[Sample | HistogramSample]], CollectContext]:
    ctx = CollectContext(targets=[], cgroup_root="/")
    live = [s for s in agent.slots if s.collector is not None]
    return list(await asyncio.gather(*(agent._collect(s, ctx) for s in live))), ctx


async def test_overrun_is_counted_folded_later_and_never_called_twice() -> None:
    agent = _agent()
    gate = threading.Event()
    slow, fast = Fake("slow", gate), Fake("fast")
    agent.slots = [CollectorSlot("slow", slow), CollectorSlot("fast", fast)]  # type: ignore[arg-type]
    t0 = time.monotonic()
    (r_slow, r_fast), ctx = await _cycle(agent)
    assert time.monotonic() - t0 < 1.5  # bounded by the 0.2 s deadline, not by the gate
    assert r_slow == [] and [s.value for s in r_fast] == [1.0]  # type: ignore[union-attr]
    assert agent.slots[0].timeouts == 1 and ctx.errors == {"fast": 1}
    # still stuck: skipped, not called again, the other goes on
    (r_slow, r_fast), _ = await _cycle(agent)
    assert r_slow == [] and slow.calls == 1 and fast.calls == 2
    assert "collector slow stuck" not in agent.staleness()  # not yet 3 intervals
    gate.set()
    agent.slots[0].pending.wait(5)  # type: ignore[union-attr]
    (r_slow, _), ctx = await _cycle(agent)
    # the late reading is folded once, with the errors it counted, in place of a new call
    assert [s.value for s in r_slow] == [1.0] and slow.calls == 1  # type: ignore[union-attr]
    assert ctx.errors == {"slow": 1, "fast": 1}
    (r_slow, _), _ = await _cycle(agent)
    assert [s.value for s in r_slow] == [2.0] and agent.slots[0].timeouts == 1  # type: ignore[union-attr]
    agent.worker.close()


async def test_readiness_names_the_stuck_collector_and_the_stale_cycle() -> None:
    agent = _agent(interval=1.0, timeout=0.1)
    gate = threading.Event()
    agent.slots = [CollectorSlot("fs", Fake("fs", gate))]  # type: ignore[arg-type]
    await _cycle(agent)
    agent.cycles = 1
    now = time.monotonic()
    agent.last_cycle_at = now
    assert agent.is_ready() and agent.staleness(now) == ""
    later = now + STALE_INTERVALS * 1.0 + 0.5
    agent.slots[0].last_done_at = now - 0.1
    agent.last_cycle_at = later - 0.5  # cycles go on, the collector does not return
    assert agent.staleness(later).startswith("collector fs stuck for")
    agent.last_cycle_at = now - 10
    agent._enter("render")
    reason = agent.staleness(later)
    assert "no collection cycle completed for" in reason and "in render" in reason
    assert "collector fs stuck" in reason
    gate.set()
    agent.worker.close()


def test_age_gauge_is_computed_per_scrape() -> None:
    agent = _agent()
    assert agent.live_lines() == b""
    agent.last_cycle_at = time.monotonic() - 5.0
    text = agent.live_lines().decode()
    assert "# TYPE kpod_last_cycle_age_seconds gauge" in text
    value = float(text.strip().splitlines()[-1].rsplit(" ", 1)[1])
    assert 5.0 <= value < 6.0
    agent.worker.close()

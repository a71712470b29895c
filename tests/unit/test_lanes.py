"""Lanes: an overrunning job keeps its thread, the queue behind it moves on, nothing joins."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from kpodmetrics.lanes import Lane, Overrun, SharedLane, run_aside


async def test_overrun_hands_the_lane_over_and_the_queue_moves_on() -> None:
    shared = SharedLane("t")
    release = threading.Event()
    first_lane = shared.lane
    stuck = shared.submit(lambda: release.wait(30) and "late", "stuck")
    behind = [shared.submit(lambda i=i: i * i, f"behind {i}") for i in range(3)]
    t0 = time.monotonic()
    with pytest.raises(Overrun):
        await shared.wait(stuck, 0.2)
    waited = time.monotonic() - t0
    assert 0.2 <= waited < 2.0
    assert shared.lane is not first_lane and first_lane.abandoned
    # queued jobs did not wait for the stuck one: they ran on the new lane
    assert [await shared.wait(j, 1.0) for j in behind] == [0, 1, 4]
    assert not stuck.done() and shared.abandoned_jobs == [stuck]
    release.set()
    assert stuck.wait(5) and stuck.result() == "late"
    first_lane._thread.join(5)  # the abandoned thread ends by itself once its call returns
    assert not first_lane._thread.is_alive()
    shared.close()


async def test_deadline_counts_from_the_start_not_from_the_queue() -> None:
    shared = SharedLane("t")
    slow = shared.submit(lambda: time.sleep(0.3), "slow")
    second = shared.submit(lambda: time.sleep(0.15) or "ok", "second")
    await shared.wait(slow, 1.0)
    # 0.45 s after submission, but only 0.15 s of its own: within its 0.3 s deadline
    assert await shared.wait(second, 0.3) == "ok"
    shared.close()


async def test_exceptions_travel_to_the_waiter() -> None:
    shared = SharedLane("t")
    with pytest.raises(ZeroDivisionError):
        await shared.run(lambda: 1 // 0, "div")
    assert await shared.run(lambda: 7, "after") == 7  # the lane survives a failed job
    shared.close()


async def test_run_aside_gives_up_without_joining() -> None:
    release = threading.Event()
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        await run_aside(lambda: release.wait(30), "stuck close", 0.2)
    assert time.monotonic() - t0 < 2.0
    release.set()
    assert await run_aside(lambda: 3, "ok", 1.0) == 3


def test_lane_threads_are_daemons() -> None:
    lane = Lane("t")
    assert lane._thread.daemon  # never joined at interpreter exit
    lane.abandon()
    with pytest.raises(RuntimeError):
        lane.submit(lambda: None)


def test_asyncio_default_loop_not_needed() -> None:
    """The shared lane is usable from a fresh event loop (asyncio.run per agent)."""
    shared = SharedLane("t")
    assert asyncio.run(shared.run(lambda: "x", "x")) == "x"
    shared.close()

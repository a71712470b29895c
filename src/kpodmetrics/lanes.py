"""Worker threads that a stuck call can hold without holding anything else.

A blocking call (statvfs on a dead NFS server, a read under `/proc/<pid>/` of a
process stuck in the kernel) cannot be interrupted from Python: the thread that made
it is lost until the kernel answers. So blocking work never runs on the event loop nor
in the default executor (which `asyncio.run` joins at exit, forever). It runs on a
`Lane`: one daemon thread that runs jobs in order. When a job overruns its deadline
the lane is *abandoned*: the job keeps the thread to itself, the jobs queued behind it
move to a fresh lane, and the abandoned thread ends by itself once the call returns.
Nothing ever joins a lane, so shutdown is never held by a stuck call.

Why one shared lane rather than a thread per collector: collectors are Python-bound,
and a thread each made the GIL convoy cost 2.5-2.9x the CPU (docs/performance.md).
Jobs on one lane never compete for the GIL, and a second thread only exists while a
call is stuck, which costs nothing because a thread blocked in a syscall holds no GIL.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

_log = logging.getLogger(__name__)
T = TypeVar("T")
_ids = itertools.count(1)


class Job(Generic[T]):
    """One call on a lane: when it started and how it ended (thread-safe)."""

    __slots__ = (
        "_callbacks",
        "_done",
        "_error",
        "_lock",
        "_result",
        "_start_callbacks",
        "ended_at",
        "fn",
        "lane",
        "name",
        "started_at",
    )

    def __init__(self, fn: Callable[[], T], name: str) -> None:
        self.fn = fn
        self.name = name
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self._result: T | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._callbacks: list[Callable[[Job[T]], object]] = []
        self._start_callbacks: list[Callable[[Job[T]], object]] = []
        self._lock = threading.Lock()
        self.lane: Lane | None = None

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None) -> bool:
        return self._done.wait(timeout)

    def result(self) -> T:
        """The call's return value, or its exception raised again (only when done)."""
        if not self._done.is_set():
            raise RuntimeError(f"job {self.name} has not finished")
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]

    def running_for(self, now: float | None = None) -> float:
        if self.started_at is None:
            return 0.0
        return (self.ended_at or now or time.monotonic()) - self.started_at

    def add_done_callback(self, cb: Callable[[Job[T]], object]) -> None:
        """`cb(job)` once the job ends (at once if it has); runs in the lane's thread."""
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(cb)
                return
        cb(self)

    def add_start_callback(self, cb: Callable[[Job[T]], object]) -> None:
        """`cb(job)` once the job starts (at once if it has); runs in the lane's thread."""
        with self._lock:
            if self.started_at is None:
                self._start_callbacks.append(cb)
                return
        cb(self)

    def _run(self) -> None:
        with self._lock:
            self.started_at = time.monotonic()
            starting, self._start_callbacks = self._start_callbacks, []
        for cb in starting:
            cb(self)
        try:
            self._result = self.fn()
        except BaseException as exc:  # handed to whoever reads the result
            self._error = exc
        self.ended_at = time.monotonic()
        with self._lock:
            self._done.set()
            callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            try:
                cb(self)
            except Exception:
                _log.exception("callback of job %s failed", self.name)


class Lane:
    """One daemon thread running jobs one after another."""

    def __init__(self, name: str) -> None:
        self.name = f"{name}-{next(_ids)}"
        self._queue: collections.deque[Job[Any]] = collections.deque()
        self._cond = threading.Condition()
        self._abandoned = False
        self.current: Job[Any] | None = None
        self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T], name: str = "") -> Job[T]:
        job: Job[T] = Job(fn, name or getattr(fn, "__name__", "job"))
        self.put(job)
        return job

    def put(self, job: Job[Any]) -> None:
        with self._cond:
            if self._abandoned:
                raise RuntimeError(f"lane {self.name} is abandoned")
            job.lane = self
            self._queue.append(job)
            self._cond.notify()

    def abandon(self) -> list[Job[Any]]:
        """Leave the current job its thread; return the jobs that had not started.
        The thread ends by itself after the current job."""
        with self._cond:
            self._abandoned = True
            left = list(self._queue)
            self._queue.clear()
            self._cond.notify()
            return left

    @property
    def abandoned(self) -> bool:
        return self._abandoned

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._abandoned:
                    self._cond.wait()
                if self._abandoned:
                    return
                job = self._queue.popleft()
                self.current = job
            job._run()
            with self._cond:
                self.current = None


class Overrun(Exception):
    """The job did not finish within its deadline; it goes on in its own thread."""

    def __init__(self, job: Job[Any], deadline: float) -> None:
        super().__init__(f"{job.name} still running after {deadline:g}s")
        self.job = job


class SharedLane:
    """The one lane all CPU-bound work shares, replaced when a job overruns on it."""

    def __init__(self, name: str = "kpod-worker") -> None:
        self._name = name
        self.lane = Lane(name)
        self.abandoned_jobs: list[Job[Any]] = []
        """Jobs that overran and still hold their thread (pruned as they finish)."""

    def submit(self, fn: Callable[[], T], name: str = "") -> Job[T]:
        return self.lane.submit(fn, name)

    async def run(self, fn: Callable[[], T], name: str = "",
                  deadline: float | None = None) -> T:
        """Run `fn` on the shared lane and wait for it without blocking the event loop.

        `deadline` counts from when the job starts (time spent queued behind other jobs
        is not its own). On overrun the lane is handed over to the job and `Overrun`
        raised; the jobs queued behind it continue on a new lane."""
        job = self.submit(fn, name)
        return await self.wait(job, deadline)

    async def wait(self, job: Job[T], deadline: float | None) -> T:
        loop = asyncio.get_running_loop()
        started = loop.create_future()
        done = loop.create_future()
        job.add_start_callback(lambda _: _wake(loop, started))
        job.add_done_callback(lambda _: _wake(loop, done))
        await asyncio.wait([started, done], return_when=asyncio.FIRST_COMPLETED)
        if deadline is not None and not job.done():
            assert job.started_at is not None
            left = job.started_at + deadline - time.monotonic()
            await asyncio.wait([done], timeout=max(0.0, left))
            if not job.done():
                self._hand_over(job)
                raise Overrun(job, deadline)
        await done
        return job.result()

    def _hand_over(self, job: Job[Any]) -> None:
        """The overrunning job keeps its thread; everyone else moves to a new lane."""
        old = job.lane
        if old is None or old.abandoned or old.current is not job:
            return
        self.lane = Lane(self._name)
        for queued in old.abandon():
            self.lane.put(queued)
        self.abandoned_jobs = [j for j in self.abandoned_jobs if not j.done()] + [job]
        _log.warning("%s overran its deadline after %.1fs: it keeps its thread (%s), "
                     "the other work moves to %s", job.name, job.running_for(), old.name,
                     self.lane.name)

    def close(self) -> None:
        """Let the worker end after its current job; never waits for it."""
        self.lane.abandon()


def _set_once(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _wake(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None]) -> None:
    """From a lane thread: resolve `fut` on its loop (gone already for a call that
    returned after shutdown: nobody waits any more)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_set_once, fut)


async def run_aside(fn: Callable[[], T], name: str, timeout: float) -> T:
    """Run `fn` on a lane of its own and wait at most `timeout` (shutdown steps that may
    block: a stuck thread is left behind, never joined). Raises TimeoutError."""
    lane = Lane(name)
    job = lane.submit(fn, name)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    job.add_done_callback(lambda _: _wake(loop, done))
    try:
        await asyncio.wait_for(asyncio.shield(done), timeout)
    finally:
        lane.abandon()
    return job.result()

"""Start-up, the collection loop and bounded shutdown: one place owns them all.

Start: one `AsyncExitStack` takes each resource as it is set up (the shared worker,
Kubernetes watch, export pipeline, collectors, BPF stats, HTTP, the loop) and tears
them down in reverse, whatever failed half-way. Loop: every poll interval, refresh the
resolver, run each collector as its own asyncio task with its own deadline (the work
itself on one shared worker thread, see lanes.py), fold samples into the store, render
the exposition once. A collector that overruns keeps its thread to itself and the
others go on; its result is folded in the first cycle after it returns. Stop: SIGTERM
ends the process within `SHUTDOWN_SECONDS` whatever is stuck; BPF links are fds, so
the kernel releases the programs even on the forced path.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from kpodmetrics import availability, selfmetrics
from kpodmetrics.availability import CollectorReport
from kpodmetrics.bpf import features
from kpodmetrics.bpf.stats import BpfStats
from kpodmetrics.collectors import registry
from kpodmetrics.collectors.base import (
    CollectContext,
    Collector,
    CollectorUnavailable,
)
from kpodmetrics.config import Settings
from kpodmetrics.export import promtext
from kpodmetrics.export.http import Exposition, HttpState, make_app
from kpodmetrics.export.pipeline import Pipeline
from kpodmetrics.export.store import ApplyStats, Series, SeriesStore
from kpodmetrics.histogram import slot_of
from kpodmetrics.lanes import Job, Overrun, SharedLane, run_aside
from kpodmetrics.pods import cgroupfs
from kpodmetrics.pods.owner import Resolver
from kpodmetrics.pods.standalone import StandaloneResolver
from kpodmetrics.samples import AnySample, HistogramSample, Kind, Sample

_log = logging.getLogger(__name__)

SHUTDOWN_SECONDS = 10.0
"""SIGTERM to process exit, at most (Kubernetes' default grace period is 30 s)."""
STEP_SECONDS = 3.0
"""Longest wait for one teardown step that may block (OTLP flush, Kubernetes close)."""
STALE_INTERVALS = 3
"""/readyz fails when no cycle (or a collector) completed within this many intervals."""


class StartupError(RuntimeError):
    """The agent cannot start; the message names the cause and the remedy."""


@dataclass
class CollectorSlot:
    name: str
    collector: Collector | None
    reason: str = ""
    last_duration: float = 0.0
    errors: int = 0
    timeouts: int = 0
    last_done_at: float = field(default_factory=time.monotonic)
    """When its last collect call returned (start-up counts as one)."""
    pending: Job[list[AnySample]] | None = None
    """A collect call that overran its deadline and has not been folded yet."""
    pending_ctx: CollectContext | None = None
    report: CollectorReport | None = None
    """Per family: its source here or why there is none (availability.py)."""
    every: int = 1
    """Cycles between reads (KPOD_READ_EVERY); in the others `reuse` is exported."""
    reuse: list[AnySample] | None = None
    """The last reading's samples, re-exported in the cycles between reads (levels and
    kernel totals only: a re-exported total adds nothing, a level stays visible)."""
    since_read: int = 0


def _report(name: str, collector: Collector | None, started: bool,
            reason: str = "") -> CollectorReport:
    """What a collector can see, from its declaration and its signals after start."""
    if collector is None:
        return availability.report(name, (), (), started=False, reason=reason)
    return availability.report(name, collector.families, collector.signal_states(),
                               started=started, reason=reason)


class Agent:
    """The running agent."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.node = settings.node_name or socket.gethostname()
        self.mode = "standalone"
        self.cgroup_root = ""
        self.resolver: Resolver | None = None
        self.kube: Any = None
        self.store = SeriesStore(static_labels=(("node", self.node),),
                                 unresolved=settings.unresolved,
                                 max_series=settings.max_series,
                                 max_series_per_family=settings.max_series_per_family,
                                 peer_top_k=settings.holder_top_k)
        self.pipeline: Pipeline | None = None
        self.exposition = Exposition()
        self.slots: list[CollectorSlot] = []
        self.cycles = 0
        self.first_metrics_at: float | None = None
        self.started_at = time.monotonic()
        self.last_cycle_at: float | None = None
        self.phase = "start-up"
        """What the current cycle is doing (named by /readyz when it is stuck)."""
        self.phase_since = self.started_at
        self.worker = SharedLane()
        self._stack = contextlib.AsyncExitStack()
        self._stop = asyncio.Event()
        self._cycle_lock = asyncio.Lock()
        self.bound_port: int | None = None
        self.bpf_stats = BpfStats()

    # -- start-up ------------------------------------------------------------------

    async def start(self) -> None:
        """Set everything up in order; on any failure, undo what was done, in reverse."""
        try:
            await self._start(self._stack)
        except BaseException:
            await self.stop()
            raise

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        s = self.settings
        stack.callback(self.worker.close)
        try:
            self.cgroup_root = cgroupfs.detect_root(s.cgroup_root or None)
        except cgroupfs.CgroupRootNotFound as exc:
            raise StartupError(str(exc)) from exc
        self.mode = await self._choose_mode()
        if self.mode == "kubernetes":
            from kpodmetrics.pods import kubernetes

            try:
                self.kube = await kubernetes.start_kubernetes(s, self.cgroup_root)
            except kubernetes.KubernetesStartError as exc:
                raise StartupError(str(exc)) from exc
            stack.push_async_callback(_bounded, "Kubernetes watch close", self.kube.close)
            self.resolver = self.kube.resolver
        else:
            self.resolver = StandaloneResolver(self.cgroup_root, grace_seconds=s.grace_period)
        self.pipeline = Pipeline(self.store, self.node, s)
        stack.push_async_callback(_bounded_call, "export pipeline shutdown",
                                  self.pipeline.shutdown)
        await self._start_collectors()
        stack.push_async_callback(self._close_collectors)
        if s.bpf_stats:
            self.bpf_stats.enable()  # per-program run time; off again when the fd closes
        stack.callback(self.bpf_stats.close)
        await self._start_http(stack)
        await self.collect_once()
        features.release_vmlinux_btf()  # the probes are done
        loop_task = asyncio.create_task(self._loop(), name="kpod-collection-loop")
        stack.push_async_callback(_cancel, loop_task)

    async def _choose_mode(self) -> str:
        s = self.settings
        if s.mode != "auto":
            return s.mode
        # from the environment and files only: no Kubernetes client import (docs/pods.md)
        from kpodmetrics.pods.clusterconfig import cluster_configured

        return "kubernetes" if cluster_configured(s.kubeconfig, os.environ) else "standalone"

    async def _start_collectors(self) -> None:
        names = registry.enabled_names(self.settings)

        def build(name: str) -> CollectorSlot:
            try:
                collector = registry.create(name, self.settings)
            except ImportError as exc:
                why = f"not available in this build: {exc}"
                return CollectorSlot(name, None, why, report=_report(name, None, False, why))
            except CollectorUnavailable as exc:
                return CollectorSlot(name, None, str(exc),
                                     report=_report(name, None, False, str(exc)))
            try:
                collector.start()
            except CollectorUnavailable as exc:
                _log.warning("collector %s is down: %s", name, exc)
                return CollectorSlot(name, None, str(exc),
                                     report=_report(name, collector, False, str(exc)))
            except Exception as exc:  # a broken collector must not stop the agent
                _log.exception("collector %s failed to start", name)
                why = f"start failed: {exc!r}"
                return CollectorSlot(name, None, why, report=_report(name, collector, False, why))
            return CollectorSlot(name, collector, report=_report(name, collector, True),
                                 every=registry.read_every(self.settings, name))

        # BPF loads are mostly kernel time (verifier): one after another on the worker
        self.slots = await self.worker.run(lambda: [build(n) for n in names],
                                           "start collectors")
        # only families with a source: one nothing feeds must not look like zero events
        self.store.declare(f for slot in self.slots if slot.collector is not None
                           and slot.report is not None for f in slot.report.live_families)
        for slot in self.slots:
            if slot.collector is not None:
                _log.info("collector %s started", slot.name)

    async def _close_collectors(self) -> None:
        """Detach and close every collector once no call of theirs runs; a collector held
        by a stuck call is left as it is (its fds go with the process)."""
        try:  # a no-op behind whatever the cancelled cycle left on the worker
            await asyncio.wait_for(self.worker.run(lambda: None, "drain"), STEP_SECONDS)
        except TimeoutError:
            running = self.worker.lane.current
            _log.warning("%s still runs on the worker: collectors left open",
                         running.name if running else "a call")
            return
        free = [s for s in self.slots if s.pending is None or s.pending.done()]
        for slot in self.slots:
            if slot not in free:
                _log.warning("collector %s is still stuck in a call: not closed", slot.name)
        await _bounded_call("closing collectors", lambda: _close_all(free))

    async def _start_http(self, stack: contextlib.AsyncExitStack) -> None:
        state = HttpState(self.exposition, self.is_ready, self.landing_rows,
                          not_ready_reason=self.not_ready_reason, live=self.live_lines,
                          signals=self.signal_rows)
        app = make_app(state)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        stack.push_async_callback(_bounded, "HTTP server stop", runner.cleanup)
        site = web.TCPSite(runner, self.settings.address, self.settings.port,
                           reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {self.settings.address}:{self.settings.port}: "
                f"{exc.strerror or exc}. Is another agent running? Choose another port with "
                "--port / KPOD_PORT"
            ) from exc
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.bound_port = server.sockets[0].getsockname()[1]
        _log.info("serving /metrics on %s:%s", self.settings.address, self.bound_port)

    # -- the loop --------------------------------------------------------------------

    async def _loop(self) -> None:
        interval = self.settings.poll_interval
        next_at = time.monotonic() + interval
        while not self._stop.is_set():
            delay = max(0.0, next_at - time.monotonic())
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
                return
            except TimeoutError:
                pass
            try:
                await self.collect_once()
            except Exception:  # keep collecting; the error is logged and counted
                _log.exception("collection cycle failed")
            next_at += interval
            if next_at < time.monotonic():  # fell behind: skip, do not pile up
                next_at = time.monotonic() + interval

    def _enter(self, phase: str) -> None:
        self.phase = phase
        self.phase_since = time.monotonic()

    async def collect_once(self) -> None:
        """One cycle: refresh owners, collect (one task per collector), fold, render."""
        assert self.resolver is not None and self.pipeline is not None
        async with self._cycle_lock:
            t0 = time.monotonic()
            resolver = self.resolver
            self._enter("resolver refresh")
            await self.worker.run(resolver.refresh, "resolver refresh")
            ctx = CollectContext(targets=resolver.targets(), cgroup_root=self.cgroup_root,
                                 proc_root=self.settings.proc_root)
            self._enter("collectors")
            results = await asyncio.gather(
                *(self._collect(s, ctx) for s in self.slots if s.collector is not None)
            )
            samples = [x for r in results for x in r]
            self._enter("store update")
            stats = await self.worker.run(lambda: self.store.apply(samples, resolver),
                                          "store update")
            self._enter("self metrics")
            await self.worker.run(
                lambda: self._fold_self_metrics(ctx, stats, time.monotonic() - t0),
                "self metrics")
            self._enter("render")
            pipeline = self.pipeline
            gz = await self.worker.run(pipeline.render_gzip, "render")
            self.exposition.set_gzipped(gz)
            pipeline.push()  # OTLP: returns at once; a worker pushes
            self.cycles += 1
            self.last_cycle_at = time.monotonic()
            self._enter("idle")
            if self.first_metrics_at is None:
                self.first_metrics_at = self.last_cycle_at

    async def _collect(self, slot: CollectorSlot, ctx: CollectContext) -> list[AnySample]:
        """This cycle's samples of one collector, within its deadline.

        A call that overruns keeps going in its own thread; until it returns the
        collector is not called again, and when it has returned its result is folded
        in place of a new reading (a BPF read-and-reset must never be thrown away)."""
        if slot.pending is not None:
            if not slot.pending.done():
                return []
            job, own, slot.pending, slot.pending_ctx = slot.pending, slot.pending_ctx, None, None
            if own is not None:
                _merge_errors(ctx, own)
            return _keep(slot, job.result())
        if slot.reuse is not None and slot.since_read + 1 < slot.every:
            slot.since_read += 1
            live = {r.cgroup_id for r in ctx.targets}
            return [s for s in slot.reuse if s.cgroup_id in live]
        own = dataclasses.replace(ctx, errors={})
        deadline = self.settings.collector_deadline
        job = self.worker.submit(lambda: self._run_collector(slot, own), f"collector {slot.name}")
        try:
            out = await self.worker.wait(job, deadline)
        except Overrun:
            slot.timeouts += 1
            slot.pending, slot.pending_ctx = job, own
            _log.warning("collector %s overran its %.3gs deadline; its result will be folded "
                         "into the first cycle after it returns", slot.name, deadline)
            job.add_done_callback(lambda j: _log.warning(
                "collector %s returned after %.1fs", slot.name, j.running_for()))
            return []
        _merge_errors(ctx, own)
        return _keep(slot, out)

    @staticmethod
    def _run_collector(slot: CollectorSlot, ctx: CollectContext) -> list[AnySample]:
        assert slot.collector is not None
        t0 = time.monotonic()
        try:
            out = list(slot.collector.collect(ctx))
        except Exception:
            slot.errors += 1
            _log.exception("collector %s failed this cycle", slot.name)
            out = []
        slot.last_done_at = time.monotonic()
        slot.last_duration = slot.last_done_at - t0
        return out

    def _fold_self_metrics(self, ctx: CollectContext, stats: ApplyStats, elapsed: float) -> None:
        out: list[Sample | HistogramSample] = []
        for slot in self.slots:
            lab = (("collector", slot.name),)
            up = slot.collector is not None
            out.append(Sample(selfmetrics.COLLECTOR_UP, 0, 1.0 if up else 0.0, Kind.GAUGE, lab))
            if not up:
                out.append(Sample(selfmetrics.COLLECTOR_STATUS, 0, 1.0, Kind.GAUGE,
                                  (*lab, ("program", ""), ("reason", selfmetrics.short_reason(slot.reason)))))
                continue
            assert slot.collector is not None
            out.append(Sample(selfmetrics.COLLECTOR_DURATION, 0, slot.last_duration,
                              Kind.GAUGE, lab))
            out.append(Sample(selfmetrics.COLLECTOR_ERRORS, 0, float(slot.errors),
                              Kind.CUMULATIVE, lab, source=slot.name))
            out.append(Sample(selfmetrics.COLLECTOR_TIMEOUTS, 0, float(slot.timeouts),
                              Kind.CUMULATIVE, lab, source=slot.name))
            out.append(Sample(selfmetrics.CGROUP_READ_ERRORS, 0,
                              float(ctx.errors.get(slot.name, 0)), Kind.DELTA, lab))
            for prog in slot.collector.programs():
                if not prog.attached:
                    out.append(Sample(selfmetrics.COLLECTOR_STATUS, 0, 1.0, Kind.GAUGE,
                                      (*lab, ("program", prog.program),
                                       ("reason", selfmetrics.short_reason(prog.reason)))))
            for h in slot.collector.map_health():
                ml = (("map", h.map),)
                if h.capacity is not None:
                    out.append(Sample(selfmetrics.MAP_CAPACITY, 0, float(h.capacity),
                                      Kind.GAUGE, ml))
                out += [
                    Sample(selfmetrics.MAP_WRITES, 0, float(h.entries_written),
                           Kind.CUMULATIVE, ml, source=slot.name),
                    Sample(selfmetrics.MAP_ERRORS, 0, float(h.update_errors),
                           Kind.CUMULATIVE, ml, source=slot.name),
                ]
                if h.reaped:
                    out.append(Sample(selfmetrics.MAP_REAPED, 0, float(h.reaped),
                                      Kind.CUMULATIVE, ml, source=slot.name))
                if h.entries is not None:  # metric maps, read and reset every cycle
                    out += [
                        Sample(selfmetrics.MAP_ENTRIES, 0, float(h.entries), Kind.GAUGE, ml),
                        Sample(selfmetrics.MAP_EVICTIONS, 0, float(h.evicted_at_least),
                               Kind.CUMULATIVE, ml, source=slot.name),
                    ]
        out.append(Sample(selfmetrics.UNRESOLVED, 0, float(stats.unresolved), Kind.DELTA))
        out.append(Sample(selfmetrics.IGNORED, 0, float(stats.ignored), Kind.DELTA))
        if self.kube is not None:
            ws = self.kube.watcher.stats
            for fam, value in ((selfmetrics.POD_WATCH_ERRORS, ws.errors),
                               (selfmetrics.POD_WATCH_MALFORMED, ws.malformed),
                               (selfmetrics.POD_WATCH_RELISTS, ws.relists_gone)):
                out.append(Sample(fam, 0, float(value), Kind.CUMULATIVE, source="watch"))
        slots = [0] * 40
        slots[slot_of(int(elapsed * 1e9), 40)] = 1
        out.append(HistogramSample(selfmetrics.CYCLE, 0, tuple(slots), int(elapsed * 1e9)))
        out += self._export_self_samples()
        self.store.apply_agent(out)

    def _export_self_samples(self) -> list[Sample | HistogramSample]:
        """Build/config info, series budget, BPF program stats, OTLP push health."""
        otlp = self.pipeline.otlp if self.pipeline is not None else None
        progs = [(s.name, p, fd) for s in self.slots if s.collector is not None
                 for p, fd in getattr(s.collector, "program_fds", dict)().items()]
        return [
            *selfmetrics.info_samples(self.settings, self.mode, [s.name for s in self.slots],
                                      otlp.url if otlp else ""),
            *selfmetrics.series_samples(self.store.series_counts(), self.store.dropped()),
            *selfmetrics.program_samples(self.bpf_stats.enabled, progs),
            *selfmetrics.otlp_samples(otlp.snapshot() if otlp else None),
            *selfmetrics.availability_samples([s.report for s in self.slots if s.report]),
        ]

    # -- state for HTTP ----------------------------------------------------------------

    def staleness(self, now: float | None = None) -> str:
        """Why the exposition is stale ("" when it is not): no cycle completed within
        STALE_INTERVALS intervals (naming the step or collector it is stuck in), or a
        collector whose call has not returned for that long."""
        now = time.monotonic() if now is None else now
        limit = STALE_INTERVALS * self.settings.poll_interval
        since = self.last_cycle_at if self.last_cycle_at is not None else self.started_at
        stuck = [(s.name, s.pending.running_for(now)) for s in self.slots
                 if s.pending is not None and not s.pending.done()
                 and now - s.last_done_at > limit]
        named = ", ".join(f"collector {n} stuck for {t:.0f}s" for n, t in stuck)
        if now - since > limit:
            where = f"{self.phase} for {now - self.phase_since:.0f}s"
            return (f"no collection cycle completed for {now - since:.0f}s "
                    f"(> {STALE_INTERVALS} intervals); in {where}" + (f"; {named}" if named else ""))
        return named

    def is_ready(self) -> bool:
        if self.cycles == 0 or self.staleness():
            return False
        return bool(self.kube is None or self.kube.ready)

    def not_ready_reason(self) -> str:
        if self.cycles == 0:
            return "first collection not done"
        return self.staleness() or "pod list not synced with the Kubernetes API yet"

    def live_lines(self) -> bytes:
        """kpod_last_cycle_age_seconds, computed per scrape (a cached body cannot age)."""
        if self.last_cycle_at is None:
            return b""
        age = time.monotonic() - self.last_cycle_at
        row = Series(labels=(("node", self.node),), owner_key="", start_ns=0, value=age)
        return promtext.render([(selfmetrics.LAST_CYCLE_AGE, [row])])

    def landing_rows(self) -> list[tuple[str, str, str]]:
        rows = []
        for s in self.slots:
            state = s.report.state.value if s.report is not None else "down"
            reason = s.report.reason if s.report is not None and s.report.reason else s.reason
            if s.pending is not None and not s.pending.done():
                state = f"stuck for {s.pending.running_for():.0f}s"
            rows.append((s.name, state, reason))
        return rows

    def signal_rows(self) -> list[tuple[str, str, str, str, str]]:
        """(collector, signal, families, variant or "none", reason) per declared signal."""
        return [(s.name, st.signal.name, ", ".join(f.name for f in st.signal.families),
                 st.variant or "none", st.reason)
                for s in self.slots if s.report is not None for st in s.report.signals]

    # -- shutdown ----------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    async def wait_stopped(self) -> None:
        await self._stop.wait()

    async def stop(self) -> None:
        """Tear down in reverse order of start-up (idempotent); never waits on a stuck call."""
        self._stop.set()
        await self._stack.aclose()


def _keep(slot: CollectorSlot, samples: list[AnySample]) -> list[AnySample]:
    """A fresh reading: for a collector read every few cycles, kept for re-export."""
    if slot.every > 1:
        slot.reuse = [s for s in samples if isinstance(s, Sample) and s.kind is not Kind.DELTA]
        slot.since_read = 0
    return samples


def _merge_errors(into: CollectContext, own: CollectContext) -> None:
    for name, n in own.errors.items():
        into.count_error(name, n)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


async def _bounded(what: str, fn: Callable[[], Awaitable[Any]]) -> None:
    """An async teardown step, given STEP_SECONDS at most."""
    try:
        await asyncio.wait_for(fn(), STEP_SECONDS)
    except TimeoutError:
        _log.warning("%s took longer than %gs: left behind", what, STEP_SECONDS)
    except Exception:
        _log.exception("%s failed", what)


async def _bounded_call(what: str, fn: Callable[[], Any]) -> None:
    """A blocking teardown step on a thread of its own, given STEP_SECONDS at most."""
    try:
        await run_aside(fn, what, STEP_SECONDS)
    except TimeoutError:
        _log.warning("%s took longer than %gs: left behind", what, STEP_SECONDS)
    except Exception:
        _log.exception("%s failed", what)


def _close_all(slots: list[CollectorSlot]) -> None:
    for slot in slots:
        if slot.collector is not None:
            try:
                slot.collector.close()
            except Exception:
                _log.exception("closing collector %s", slot.name)




def _arm_exit_watchdog(seconds: float) -> None:
    """After SIGTERM, end the process in `seconds` whatever still runs: a thread stuck in
    the kernel cannot be joined, and the interpreter would wait for it at exit. Exit
    releases every fd, so BPF links and programs go too."""

    def fire() -> None:
        _log.error("shutdown did not finish within %gs: exiting now", seconds)
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()


async def run(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT, then stop within SHUTDOWN_SECONDS; always clean up."""
    agent = Agent(settings)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def on_signal() -> None:
        if not stopping.is_set():
            stopping.set()
            _arm_exit_watchdog(SHUTDOWN_SECONDS - 0.5)
        agent.request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        starting = asyncio.create_task(agent.start(), name="kpod-start-up")
        waiting = asyncio.create_task(stopping.wait())
        await asyncio.wait([starting, waiting], return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()  # a start-up error ends here (StartupError: exit 1)
            _log.info("kpod-metrics running (mode=%s, profile=%s, node=%s, cgroup root=%s)",
                      agent.mode, settings.profile, agent.node, agent.cgroup_root)
            await stopping.wait()
        else:
            await _cancel(starting)  # SIGTERM during start-up
        waiting.cancel()
        _log.info("stopping")
    finally:
        await agent.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

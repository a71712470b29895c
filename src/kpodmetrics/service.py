"""Start-up, the collection loop and graceful shutdown: one place owns them all.

Start: pick the mode (standalone or Kubernetes), find the cgroup root, start every
enabled collector in a worker thread (one that cannot start is reported down, the
rest go on), bind HTTP, run a first collection. Loop: every poll interval, refresh
the resolver, run collectors concurrently off the event loop, fold samples into the
store, render the exposition once. Stop: cancel the loop, close collectors (links
destroyed, objects closed), stop HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from kpodmetrics import selfmetrics
from kpodmetrics.bpf.stats import BpfStats
from kpodmetrics.collectors import registry
from kpodmetrics.collectors.base import (
    CollectContext,
    Collector,
    CollectorUnavailable,
)
from kpodmetrics.config import Settings
from kpodmetrics.export.http import Exposition, HttpState, make_app
from kpodmetrics.export.pipeline import Pipeline
from kpodmetrics.export.store import ApplyStats, SeriesStore
from kpodmetrics.histogram import slot_of
from kpodmetrics.pods import cgroupfs
from kpodmetrics.pods.owner import Resolver
from kpodmetrics.pods.standalone import StandaloneResolver
from kpodmetrics.samples import HistogramSample, Kind, Sample

_log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The agent cannot start; the message names the cause and the remedy."""


@dataclass
class CollectorSlot:
    name: str
    collector: Collector | None
    reason: str = ""
    last_duration: float = 0.0
    errors: int = 0


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
                                 max_series_per_family=settings.max_series_per_family)
        self.pipeline: Pipeline | None = None
        self.exposition = Exposition()
        self.slots: list[CollectorSlot] = []
        self.cycles = 0
        self.first_metrics_at: float | None = None
        self.started_at = time.monotonic()
        self._runner: web.AppRunner | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._cycle_lock = asyncio.Lock()
        self.bound_port: int | None = None
        self.bpf_stats = BpfStats()

    # -- start-up ------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
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
            self.resolver = self.kube.resolver
        else:
            self.resolver = StandaloneResolver(self.cgroup_root, grace_seconds=s.grace_period)
        self.pipeline = Pipeline(self.store, self.node, s)
        await self._start_collectors()
        if s.bpf_stats:
            self.bpf_stats.enable()  # per-program run time; off again when the fd closes
        await self._start_http()
        await self.collect_once()
        self._loop_task = asyncio.create_task(self._loop(), name="kpod-collection-loop")

    async def _choose_mode(self) -> str:
        s = self.settings
        if s.mode == "standalone":
            return "standalone"
        try:
            from kpodmetrics.pods import kubernetes
        except ImportError as exc:
            if s.mode == "kubernetes":
                raise StartupError(f"Kubernetes mode unavailable: {exc}") from exc
            return "standalone"
        if s.mode == "kubernetes" or kubernetes.cluster_configured(s):
            return "kubernetes"
        return "standalone"

    async def _start_collectors(self) -> None:
        names = registry.enabled_names(self.settings)

        def build(name: str) -> CollectorSlot:
            try:
                collector = registry.create(name, self.settings)
            except ImportError as exc:
                return CollectorSlot(name, None, f"not available in this build: {exc}")
            except CollectorUnavailable as exc:
                return CollectorSlot(name, None, str(exc))
            try:
                collector.start()
            except CollectorUnavailable as exc:
                _log.warning("collector %s is down: %s", name, exc)
                return CollectorSlot(name, None, str(exc))
            except Exception as exc:  # a broken collector must not stop the agent
                _log.exception("collector %s failed to start", name)
                return CollectorSlot(name, None, f"start failed: {exc!r}")
            return CollectorSlot(name, collector)

        self.slots = list(await asyncio.gather(*(asyncio.to_thread(build, n) for n in names)))
        self.store.declare(f.name for slot in self.slots if slot.collector is not None
                           for f in slot.collector.families)
        for slot in self.slots:
            if slot.collector is not None:
                _log.info("collector %s started", slot.name)

    async def _start_http(self) -> None:
        state = HttpState(self.exposition, self.is_ready, self.landing_rows,
                          not_ready_reason=self.not_ready_reason)
        app = make_app(state)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.address, self.settings.port,
                           reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
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

    async def collect_once(self) -> None:
        """One cycle: refresh owners, collect, fold, render."""
        assert self.resolver is not None and self.pipeline is not None
        async with self._cycle_lock:
            t0 = time.monotonic()
            resolver = self.resolver
            await asyncio.to_thread(resolver.refresh)
            ctx = CollectContext(targets=resolver.targets(), cgroup_root=self.cgroup_root,
                                 proc_root=self.settings.proc_root)
            live = [s for s in self.slots if s.collector is not None]
            # one after another in one worker: they are Python-bound, and one thread
            # each made the GIL convoy cost 2.5-2.9x the CPU (docs/performance.md)
            results = await asyncio.to_thread(
                lambda: [self._run_collector(s, ctx) for s in live]
            )
            samples = [x for r in results for x in r]
            stats = await asyncio.to_thread(self.store.apply, samples, resolver)
            await asyncio.to_thread(self._fold_self_metrics, ctx, stats,
                                    time.monotonic() - t0)
            body = await asyncio.to_thread(self.pipeline.render)
            await asyncio.to_thread(self.exposition.set, body)  # gzip off the loop
            self.pipeline.push()  # OTLP: returns at once; a worker pushes
            self.cycles += 1
            if self.first_metrics_at is None:
                self.first_metrics_at = time.monotonic()

    @staticmethod
    def _run_collector(slot: CollectorSlot, ctx: CollectContext) -> list[Sample | HistogramSample]:
        assert slot.collector is not None
        t0 = time.monotonic()
        try:
            out = list(slot.collector.collect(ctx))
        except Exception:
            slot.errors += 1
            _log.exception("collector %s failed this cycle", slot.name)
            out = []
        slot.last_duration = time.monotonic() - t0
        return out

    def _fold_self_metrics(self, ctx: CollectContext, stats: ApplyStats, elapsed: float) -> None:
        out: list[Sample | HistogramSample] = []
        for slot in self.slots:
            lab = (("collector", slot.name),)
            up = slot.collector is not None
            out.append(Sample(selfmetrics.COLLECTOR_UP.name, 0, 1.0 if up else 0.0, Kind.GAUGE, lab))
            if not up:
                out.append(Sample(selfmetrics.COLLECTOR_STATUS.name, 0, 1.0, Kind.GAUGE,
                                  (*lab, ("program", ""), ("reason", _short(slot.reason)))))
                continue
            assert slot.collector is not None
            out.append(Sample(selfmetrics.COLLECTOR_DURATION.name, 0, slot.last_duration,
                              Kind.GAUGE, lab))
            out.append(Sample(selfmetrics.COLLECTOR_ERRORS.name, 0, float(slot.errors),
                              Kind.CUMULATIVE, lab, source=slot.name))
            out.append(Sample(selfmetrics.CGROUP_READ_ERRORS.name, 0,
                              float(ctx.errors.get(slot.name, 0)), Kind.DELTA, lab))
            for prog in slot.collector.programs():
                if not prog.attached:
                    out.append(Sample(selfmetrics.COLLECTOR_STATUS.name, 0, 1.0, Kind.GAUGE,
                                      (*lab, ("program", prog.program),
                                       ("reason", _short(prog.reason)))))
            for h in slot.collector.map_health():
                ml = (("map", h.map),)
                out += [
                    Sample(selfmetrics.MAP_CAPACITY.name, 0, float(h.capacity), Kind.GAUGE, ml),
                    Sample(selfmetrics.MAP_WRITES.name, 0, float(h.entries_written),
                           Kind.CUMULATIVE, ml, source=slot.name),
                    Sample(selfmetrics.MAP_ERRORS.name, 0, float(h.update_errors),
                           Kind.CUMULATIVE, ml, source=slot.name),
                ]
                if h.entries is not None:  # metric maps, read and reset every cycle
                    out += [
                        Sample(selfmetrics.MAP_ENTRIES.name, 0, float(h.entries), Kind.GAUGE, ml),
                        Sample(selfmetrics.MAP_EVICTIONS.name, 0, float(h.evicted_at_least),
                               Kind.CUMULATIVE, ml, source=slot.name),
                    ]
        out.append(Sample(selfmetrics.UNRESOLVED.name, 0, float(stats.unresolved), Kind.DELTA))
        out.append(Sample(selfmetrics.IGNORED.name, 0, float(stats.ignored), Kind.DELTA))
        if self.kube is not None:
            ws = self.kube.watcher.stats
            for fam, value in ((selfmetrics.POD_WATCH_ERRORS, ws.errors),
                               (selfmetrics.POD_WATCH_MALFORMED, ws.malformed),
                               (selfmetrics.POD_WATCH_RELISTS, ws.relists_gone)):
                out.append(Sample(fam.name, 0, float(value), Kind.CUMULATIVE, source="watch"))
        slots = [0] * 40
        slots[slot_of(int(elapsed * 1e9), 40)] = 1
        out.append(HistogramSample(selfmetrics.CYCLE.name, 0, tuple(slots), int(elapsed * 1e9)))
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
        ]

    # -- state for HTTP ----------------------------------------------------------------

    def is_ready(self) -> bool:
        if self.cycles == 0:
            return False
        return bool(self.kube is None or self.kube.ready)

    def not_ready_reason(self) -> str:
        if self.cycles == 0:
            return "first collection not done"
        return "pod list not synced with the Kubernetes API yet"

    def landing_rows(self) -> list[tuple[str, str, str]]:
        return [(s.name, "up" if s.collector is not None else "down", s.reason)
                for s in self.slots]

    # -- shutdown ----------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    async def wait_stopped(self) -> None:
        await self._stop.wait()

    async def stop(self) -> None:
        self._stop.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop_task
            self._loop_task = None
        async with self._cycle_lock:
            await asyncio.gather(*(asyncio.to_thread(_close, s) for s in self.slots))
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.kube is not None:
            await self.kube.close()
            self.kube = None
        if self.pipeline is not None:
            self.pipeline.shutdown()
            self.pipeline = None
        self.bpf_stats.close()


def _close(slot: CollectorSlot) -> None:
    if slot.collector is not None:
        try:
            slot.collector.close()
        except Exception:
            _log.exception("closing collector %s", slot.name)


def _short(reason: str, limit: int = 200) -> str:
    reason = " ".join(reason.split())
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"


async def run(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT; always clean up."""
    agent = Agent(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.request_stop)
    try:
        await agent.start()
        _log.info("kpod-metrics running (mode=%s, profile=%s, node=%s, cgroup root=%s)",
                  agent.mode, settings.profile, agent.node, agent.cgroup_root)
        await agent.wait_stopped()
        _log.info("stopping")
    finally:
        await agent.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

"""OTLP push (http/protobuf): the store through the SDK to a collector, once per cycle.

The collection loop only calls `trigger()`, which never blocks: a single worker thread
builds the metrics from the store (export/otel.py) and hands them to the SDK exporter's
public `export()`. The SDK's
HTTP client already retries transient failures with back-off inside one push; on top
of that, after a failed push the worker waits poll_interval * 2^(failures-1) (capped)
before trying again, so a dead collector costs a bounded, shrinking amount of CPU.
Temporality is cumulative, so a skipped push loses nothing: the next one carries the
totals. Every HTTP attempt, push, failure and retry is counted for self-metrics.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics.export import Metric, MetricExportResult
from opentelemetry.sdk.resources import Resource

from kpodmetrics.config import Settings, parse_otlp_headers
from kpodmetrics.export import otlp_url
from kpodmetrics.export.otel import metrics_data

_log = logging.getLogger(__name__)

MAX_BACKOFF_S = 300.0


def metrics_url(settings: Settings) -> str:
    """The signal URL per the OTel spec (export/otlp_url.py, importable without the SDK)."""
    return otlp_url.metrics_url(settings)


class _CountingSession(requests.Session):
    """Counts HTTP attempts, so the SDK client's internal retries become visible."""

    def __init__(self, on_attempt: Callable[[], None]) -> None:
        super().__init__()
        self._on_attempt = on_attempt

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self._on_attempt()
        return super().request(*args, **kwargs)


@dataclass(slots=True)
class PushStats:
    pushes: int = 0
    failures: int = 0
    attempts: int = 0
    skipped: int = 0
    """Triggers not pushed because a push was running or back-off was in force."""
    consecutive_failures: int = 0
    last_duration: float = 0.0
    last_success_unix: float = 0.0

    @property
    def retries(self) -> int:
        """HTTP attempts beyond the first of each push."""
        return max(0, self.attempts - self.pushes)


class OtlpPusher:
    """Owns the OTLP exporter and its worker thread."""

    def __init__(self, url: str, headers: dict[str, str], producer: Callable[[], list[Metric]],
                 interval: float, timeout: float | None = None,
                 on_delivered: Callable[[], None] | None = None,
                 resource: Resource | None = None) -> None:
        self.url = url
        self.producer = producer
        self.resource = resource or Resource.create({"service.name": "kpod-metrics"})
        self._on_delivered = on_delivered
        """Told after each delivered export (start times of reset series, otel.py)."""
        self.stats = PushStats()
        self._stats_lock = threading.Lock()
        self.timeout = timeout if timeout is not None else max(1.0, min(10.0, interval))
        self.exporter = OTLPMetricExporter(
            endpoint=url, headers=headers, timeout=self.timeout,
            compression=Compression.Gzip, session=_CountingSession(self._count_attempt),
        )
        self.interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._not_before = 0.0
        self._thread = threading.Thread(target=self._run, name="kpod-otlp-push", daemon=True)

    @classmethod
    def from_settings(cls, settings: Settings, producer: Callable[[], list[Metric]],
                      on_delivered: Callable[[], None] | None = None,
                      resource: Resource | None = None) -> OtlpPusher | None:
        url = metrics_url(settings)
        if not url:
            return None
        return cls(url, parse_otlp_headers(settings.otlp_headers), producer,
                   settings.poll_interval, on_delivered=on_delivered, resource=resource)

    def _count_attempt(self) -> None:
        with self._stats_lock:
            self.stats.attempts += 1

    def start(self) -> None:
        self._thread.start()

    def trigger(self) -> None:
        """Ask for a push of the current state; returns at once."""
        if self._wake.is_set() or time.monotonic() < self._not_before:
            with self._stats_lock:
                self.stats.skipped += 1
            return
        self._wake.set()

    def snapshot(self) -> PushStats:
        with self._stats_lock:
            s = self.stats
            return PushStats(s.pushes, s.failures, s.attempts, s.skipped,
                             s.consecutive_failures, s.last_duration, s.last_success_unix)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            if self._stop.is_set():
                return
            self.push_once()
            self._wake.clear()

    def push_once(self) -> bool:
        """Collect and export once (blocking); True on success."""
        t0 = time.monotonic()
        ok = False
        try:
            data = metrics_data(self.resource, self.producer())
            ok = self.exporter.export(data, timeout_millis=self.timeout * 1000) \
                is MetricExportResult.SUCCESS
            if ok and self._on_delivered is not None:
                self._on_delivered()
        except Exception:  # never let the push thread die
            _log.exception("OTLP push to %s failed", self.url)
        with self._stats_lock:
            s = self.stats
            s.pushes += 1
            s.last_duration = time.monotonic() - t0
            if ok:
                s.consecutive_failures = 0
                s.last_success_unix = time.time()
                self._not_before = 0.0
            else:
                s.failures += 1
                s.consecutive_failures += 1
                backoff = min(MAX_BACKOFF_S,
                              self.interval * 2 ** min(s.consecutive_failures - 1, 16))
                self._not_before = time.monotonic() + backoff
                if s.consecutive_failures in (1, 10) or s.consecutive_failures % 100 == 0:
                    _log.warning("OTLP push to %s failed (%d in a row); next try in %.0fs",
                                 self.url, s.consecutive_failures, backoff)
        return ok

    def shutdown(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.timeout + 1)
        self.exporter.shutdown()

"""The OTel pipeline: MeterProvider, the Prometheus reader (and OTLP when asked).

`render()` runs the SDK's Prometheus path once and returns exposition bytes; the
service calls it once per collection cycle, off the event loop, and every scrape is
served those cached bytes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from kpodmetrics import __version__
from kpodmetrics.export.otel import ProducerReaderMixin, StoreProducer
from kpodmetrics.export.store import SeriesStore


class PrometheusReaderWithProducers(ProducerReaderMixin, PrometheusMetricReader):
    """Prometheus reader that also exports the series store."""


class Pipeline:
    """Owns the MeterProvider and its readers."""

    def __init__(self, store: SeriesStore, node: str,
                 extra_readers: Iterable[MetricReader] = ()) -> None:
        self.store = store
        self.registry = CollectorRegistry(auto_describe=False)
        self.prom_producer = StoreProducer(store, with_units=True)
        self.prom_reader = PrometheusReaderWithProducers(
            disable_target_info=True,
            scope_info_enabled=False,
            registry=self.registry,
            producers=[self.prom_producer.produce],
        )
        self.resource = Resource.create({
            "service.name": "kpod-metrics",
            "service.version": __version__,
            "k8s.node.name": node,
        })
        self.provider = MeterProvider(
            metric_readers=[self.prom_reader, *extra_readers], resource=self.resource,
            shutdown_on_exit=False,
        )
        meter = self.provider.get_meter("kpodmetrics.agent", __version__)
        # MetricReader.collect only reaches _receive_metrics when the SDK has a point:
        # this one agent-level gauge guarantees that.
        meter.create_observable_gauge(
            "kpod_agent_up", callbacks=[self._up],
            description="1 while the agent process runs (keeps the OTel pipeline flowing)",
        )
        self._render_lock = threading.Lock()

    @staticmethod
    def _up(options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(1)

    def render(self) -> bytes:
        """Prometheus text exposition (format 0.0.4) of everything, once."""
        with self._render_lock:
            return bytes(generate_latest(self.registry))

    def shutdown(self) -> None:
        self.provider.shutdown(timeout_millis=5000)

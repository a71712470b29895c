"""The two exits of the series store: Prometheus text and OTLP push through the SDK.

`render()` builds the Prometheus exposition straight from the store (export/promtext.py)
because the SDK's Prometheus path is too slow at 70k series. The SDK stays the road to
OTLP: the MeterProvider carries the OTLP pull reader (when configured) and a Prometheus
reader; `render_sdk()` renders through the latter and is the reference the tests and
benchmarks compare the hand-written text against. Neither reader holds per-pod state:
pod series only exist in the store and are appended at collect time by the producer.
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
from kpodmetrics.config import Settings
from kpodmetrics.export import promtext
from kpodmetrics.export.otel import OTLP_ATTRIBUTE_NAMES, ProducerReaderMixin, StoreProducer
from kpodmetrics.export.otlp import OtlpPusher
from kpodmetrics.export.store import Series, SeriesStore
from kpodmetrics.families import Family, FamilyType

AGENT_UP = Family(
    "kpod_agent_up", FamilyType.GAUGE,
    "1 while the agent process runs (keeps the OTel pipeline flowing)",
)
"""Not in the store: it is the one SDK instrument, rendered alike on both exits."""


class PrometheusReaderWithProducers(ProducerReaderMixin, PrometheusMetricReader):
    """Prometheus reader that also exports the series store (the SDK reference path)."""


class Pipeline:
    """Owns the MeterProvider, its readers and the OTLP pusher."""

    def __init__(self, store: SeriesStore, node: str, settings: Settings | None = None,
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
        self.otlp_producer = StoreProducer(store, rename=OTLP_ATTRIBUTE_NAMES)
        self.otlp: OtlpPusher | None = (
            OtlpPusher.from_settings(settings, self.otlp_producer.produce,
                                     on_delivered=self.otlp_producer.confirm)
            if settings else None
        )
        readers: list[MetricReader] = [self.prom_reader, *extra_readers]
        if self.otlp is not None:
            readers.append(self.otlp.reader)
        self.resource = Resource.create({
            "service.name": "kpod-metrics",
            "service.version": __version__,
            "k8s.node.name": node,
        })
        self.provider = MeterProvider(metric_readers=readers, resource=self.resource,
                                      shutdown_on_exit=False)
        meter = self.provider.get_meter("kpodmetrics.agent", __version__)
        # MetricReader.collect only reaches _receive_metrics when the SDK has a point:
        # this one agent-level gauge guarantees that.
        meter.create_observable_gauge(AGENT_UP.name, callbacks=[self._up],
                                      description=AGENT_UP.help)
        self._render_lock = threading.Lock()
        if self.otlp is not None:
            self.otlp.start()

    @staticmethod
    def _up(options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(1)

    def render(self) -> bytes:
        """Prometheus text exposition (format 0.0.4) of everything, from the store."""
        up = (AGENT_UP, [Series(labels=(), owner_key="", start_ns=0, value=1.0)])
        with self._render_lock:
            snap = self.store.snapshot()
            snap.append(up)
            snap.sort(key=lambda fr: fr[0].name)
            return promtext.render(snap)

    def render_sdk(self) -> bytes:
        """The same exposition through the SDK's Prometheus exporter (reference path)."""
        with self._render_lock:
            return bytes(generate_latest(self.registry))

    def push(self) -> None:
        """Ask the OTLP pusher for a push of the current state (never blocks)."""
        if self.otlp is not None:
            self.otlp.trigger()

    def shutdown(self) -> None:
        if self.otlp is not None:
            self.otlp.shutdown()
        self.provider.shutdown(timeout_millis=5000)

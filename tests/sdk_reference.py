"""The SDK's Prometheus exposition of a series store: a reference for the tests only.

The agent renders Prometheus text itself (export/promtext.py: measured 12x faster at
70k lines, see export/pipeline.py) and sends OTLP through the exporter's public API
without a MeterProvider. The SDK path is kept here as an independent renderer of the
same store, so tests (and benchmarks/export_bench.py) can compare the hand-written
text with it number for number. It needs what the agent no longer carries: a reader
mixin on the SDK's private `_receive_metrics` hook (pinned, tests/unit/test_otel_hook.py)
and one SDK instrument, without which the reader never reaches that hook.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Metric, MetricsData, ResourceMetrics, ScopeMetrics
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from kpodmetrics.export.otel import SCOPE, StoreProducer
from kpodmetrics.export.pipeline import AGENT_UP, resource_of
from kpodmetrics.export.store import SeriesStore


class ProducerReaderMixin:
    """Appends producer output to the SDK's own collection before export."""

    _producers: list[Callable[[], list[Metric]]]

    def __init__(self, *args: Any, producers: list[Callable[[], list[Metric]]] | None = None,
                 **kwargs: Any) -> None:
        self._producers = list(producers or [])
        super().__init__(*args, **kwargs)

    def _receive_metrics(self, metrics_data: MetricsData | None, timeout_millis: float = 10_000,
                         **kwargs: Any) -> None:
        extra = [m for p in self._producers for m in p()]
        if extra:
            if metrics_data is None or not metrics_data.resource_metrics:
                raise RuntimeError("SDK produced no resource metrics: keep one SDK instrument")
            rms = list(metrics_data.resource_metrics)
            rm = rms[0]
            rms[0] = ResourceMetrics(
                resource=rm.resource, schema_url=rm.schema_url,
                scope_metrics=[*rm.scope_metrics, ScopeMetrics(SCOPE, extra, "")],
            )
            metrics_data = MetricsData(resource_metrics=rms)
        super()._receive_metrics(metrics_data, timeout_millis=timeout_millis, **kwargs)  # type: ignore[misc]


class PrometheusReaderWithProducers(ProducerReaderMixin, PrometheusMetricReader):
    """Prometheus reader that also exports the producers' metrics."""


class SdkPrometheus:
    """The store through MeterProvider -> PrometheusMetricReader -> prometheus_client."""

    def __init__(self, store: SeriesStore, node: str = "n1") -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.reader = PrometheusReaderWithProducers(
            disable_target_info=True, scope_info_enabled=False, registry=self.registry,
            producers=[StoreProducer(store, with_units=True).produce])
        self.provider = MeterProvider(metric_readers=[self.reader], resource=resource_of(node),
                                      shutdown_on_exit=False)
        meter = self.provider.get_meter("kpodmetrics.agent")
        meter.create_observable_gauge(AGENT_UP.name, callbacks=[self._up],
                                      description=AGENT_UP.help)

    @staticmethod
    def _up(options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(1)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))

    def shutdown(self) -> None:
        self.provider.shutdown(timeout_millis=5000)

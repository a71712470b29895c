"""The SDK surface we depend on. The agent uses only public API (the metric data
classes and OTLPMetricExporter.export); the tests' SDK Prometheus reference
(tests/sdk_reference.py) uses a private hook. If any of these fail after an SDK
upgrade, re-verify both before the pin is moved."""

from __future__ import annotations

import inspect

import opentelemetry.sdk.version
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality as T
from opentelemetry.sdk.metrics.export import (
    ExponentialHistogramDataPoint,
    InMemoryMetricReader,
    Metric,
    MetricReader,
    NumberDataPoint,
    PeriodicExportingMetricReader,
    Sum,
)

from tests.sdk_reference import ProducerReaderMixin


class InMemoryReaderWithProducers(ProducerReaderMixin, InMemoryMetricReader):
    pass


def test_sdk_minor_version_is_the_pinned_one() -> None:
    assert opentelemetry.sdk.version.__version__.startswith("1.45."), (
        "opentelemetry-sdk moved: re-verify MetricReader._receive_metrics and the mixin")


def test_receive_metrics_signature_and_callers() -> None:
    sig = inspect.signature(MetricReader._receive_metrics)
    assert list(sig.parameters)[:3] == ["self", "metrics_data", "timeout_millis"]
    assert getattr(MetricReader._receive_metrics, "__isabstractmethod__", False)
    src = inspect.getsource(MetricReader.collect)
    assert "self._receive_metrics(" in src, "collect no longer feeds _receive_metrics"
    for cls in (PrometheusMetricReader, PeriodicExportingMetricReader, InMemoryMetricReader):
        assert "_receive_metrics" in cls.__dict__, f"{cls.__name__} no longer overrides the hook"


def _producer() -> list[Metric]:
    pt = NumberDataPoint({"pod": "p"}, 1, 2, 42)
    return [Metric("kpod_hook_total", "h", "", Sum([pt], T.CUMULATIVE, True))]


def test_producer_output_reaches_both_reader_kinds() -> None:
    class Prom(ProducerReaderMixin, PrometheusMetricReader):
        pass

    from prometheus_client import CollectorRegistry, generate_latest

    reg = CollectorRegistry()
    prom = Prom(registry=reg, producers=[_producer], scope_info_enabled=False)
    mem = InMemoryReaderWithProducers(producers=[_producer])
    provider = MeterProvider(metric_readers=[prom, mem])
    provider.get_meter("t").create_observable_gauge("keepalive", callbacks=[lambda o: []])
    meter = provider.get_meter("t2")
    meter.create_counter("sdk_one").add(1)
    assert b'kpod_hook_total{pod="p"} 42.0' in generate_latest(reg)
    data = mem.get_metrics_data()
    assert data is not None
    names = [m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]
    assert "kpod_hook_total" in names and "sdk_one" in names
    provider.shutdown()


def test_the_otlp_exit_uses_the_public_exporter_api() -> None:
    """OTLPMetricExporter.export(MetricsData) is public and takes our data classes."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    import kpodmetrics.export.otlp as otlp_mod
    import kpodmetrics.export.pipeline as pipe_mod

    assert list(inspect.signature(OTLPMetricExporter.export).parameters)[:2] == [
        "self", "metrics_data"]
    for mod in (otlp_mod, pipe_mod):
        src = inspect.getsource(mod)
        assert "_receive_metrics" not in src and "MeterProvider(" not in src


def test_exponential_points_still_break_the_prometheus_reader() -> None:
    """Why histograms reach Prometheus with explicit bounds only (DESIGN.md)."""
    assert "value" not in ExponentialHistogramDataPoint.__dataclass_fields__

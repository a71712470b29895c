"""The series store as OpenTelemetry data, for the OTLP exit.

Kernel data is already aggregated, and the OTel API cannot record a pre-aggregated
histogram. It does not have to: the SDK's public data classes (`Metric`, `Sum`,
`Histogram`, ... of opentelemetry.sdk.metrics.export) describe cumulative points with
their own start times, and the exporter's public `export(MetricsData)` encodes and
sends them. So the store becomes `Metric`s here and goes straight to the exporter: no
MeterProvider, no reader, no private hook, no dummy instrument.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from kpodmetrics import __version__
from kpodmetrics.export.store import Series, SeriesStore
from kpodmetrics.families import Family, FamilyType
from kpodmetrics.histogram import cumulative_at

_log = logging.getLogger(__name__)
SCOPE = InstrumentationScope("kpodmetrics", __version__)

OTLP_ATTRIBUTE_NAMES = {
    "namespace": "k8s.namespace.name",
    "pod": "k8s.pod.name",
    "container": "k8s.container.name",
    "node": "k8s.node.name",
}
"""Semantic-convention names on the OTLP exit; Prometheus keeps the short labels."""


class StoreProducer:
    """Builds OTel `Metric`s from the store, renaming attributes for its exit.

    Points carry the time of the collection they describe. A series whose first value
    was a kernel total (`Series.reset_start`: the cgroup's history from before the
    agent saw it) is sent as a true reset point (start = time) until one export that
    contained it was delivered (`confirm()`); from then on its start is the first
    reading, so a backend counts growth since then, never the history (docs/export.md).
    """

    def __init__(self, store: SeriesStore, rename: Mapping[str, str] | None = None,
                 with_units: bool = True) -> None:
        self.store = store
        self.rename = dict(rename or {})
        self.with_units = with_units
        self._broken: set[str] = set()
        self._produced_ns = 0
        self._delivered_ns = 0

    def confirm(self) -> None:
        """The last `produce()` output reached the backend."""
        self._delivered_ns = self._produced_ns

    def _start(self, s: Series, now: int) -> int:
        if s.reset_start and s.start_ns > self._delivered_ns:
            return now
        return min(s.start_ns, now)

    def produce(self) -> list[Metric]:
        now = self.store.collected_ns or time.time_ns()
        self._produced_ns = now
        out: list[Metric] = []
        for family, rows in self.store.snapshot():
            if not rows:
                continue
            try:
                out.append(self._metric(family, rows, now))
            except ValueError as exc:  # a broken declaration must not sink the others
                if family.name not in self._broken:
                    self._broken.add(family.name)
                    _log.error("family %s left out of OTel export: %s", family.name, exc)
        return out

    def _metric(self, family: Family, rows: list[Series], now: int) -> Metric:
        rename = self.rename
        unit = family.unit if self.with_units else ""
        data: Any
        if family.type is FamilyType.HISTOGRAM:
            bounds = family.bounds()
            points = []
            for s in rows:
                cum = (cumulative_at(s.slots, family.bucket_exponents) if s.slots
                       else [0] * len(bounds))
                total = s.count
                per_bucket = [c - p for c, p in zip(cum, [0, *cum[:-1]], strict=True)]
                per_bucket.append(total - (cum[-1] if cum else 0))
                points.append(HistogramDataPoint(
                    attributes={rename.get(k, k): v for k, v in s.labels},
                    start_time_unix_nano=self._start(s, now), time_unix_nano=now,
                    count=total, sum=s.total * family.scale,
                    bucket_counts=per_bucket, explicit_bounds=bounds,
                    min=None, max=None,  # type: ignore[arg-type]  # unknown: unset in OTLP
                ))
            data = Histogram(points, AggregationTemporality.CUMULATIVE)
        else:
            nps = [
                NumberDataPoint(
                    attributes={rename.get(k, k): v for k, v in s.labels},
                    start_time_unix_nano=self._start(s, now), time_unix_nano=now,
                    value=s.value,
                )
                for s in rows
            ]
            if family.type is FamilyType.COUNTER:
                data = Sum(nps, AggregationTemporality.CUMULATIVE, is_monotonic=True)
            else:
                data = Gauge(nps)
        return Metric(family.name, family.help, unit, data)


def metrics_data(resource: Resource, metrics: list[Metric]) -> MetricsData:
    """The SDK's public export payload for our own pre-aggregated metrics."""
    return MetricsData(resource_metrics=[ResourceMetrics(
        resource=resource, scope_metrics=[ScopeMetrics(SCOPE, metrics, "")], schema_url="")])

"""The two exits of the series store: Prometheus text and OTLP push.

`render()` builds the Prometheus exposition straight from the store
(export/promtext.py). The OTLP exit turns the same store into the SDK's public metric
data and hands it to the SDK's OTLP exporter (export/otel.py, export/otlp.py). No
MeterProvider runs in the agent: neither exit holds per-pod state, pod series only
exist in the store.

Why there is no SDK Prometheus exposition (opentelemetry-exporter-prometheus) in the
agent, not even as an option: measured with `python -m benchmarks.export_bench` on
this project's 2-CPU machine, it renders 70k lines in 1.72 s against 0.147 s for
promtext (750 series: 0.080 s vs 0.005 s; benchmarks/results/export_bench.json),
above the 1.5 s cycle budget at the documented scale, for the same bytes. A user
would gain nothing by selecting it; it stays in the tests as the reference the
hand-written text is compared against (tests/sdk_reference.py).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from kpodmetrics import __version__, families
from kpodmetrics.config import Settings
from kpodmetrics.export import otlp_url, promtext
from kpodmetrics.export.store import Series, SeriesStore
from kpodmetrics.families import Family, FamilyType

if TYPE_CHECKING:  # the OTel SDK is imported only when something uses the OTLP exit
    from opentelemetry.sdk.metrics.export import Metric
    from opentelemetry.sdk.resources import Resource

    from kpodmetrics.export.otel import StoreProducer
    from kpodmetrics.export.otlp import OtlpPusher

AGENT_UP = Family(
    "kpod_agent_up", FamilyType.GAUGE,
    "1 while the agent process runs",
)
"""Not in the store (it carries no node label): added alike to both exits here."""
families.register(AGENT_UP)


def resource_of(node: str) -> Resource:
    from opentelemetry.sdk.resources import Resource

    return Resource.create({
        "service.name": "kpod-metrics",
        "service.version": __version__,
        "k8s.node.name": node,
    })


class Pipeline:
    """Owns the renderers of the store and the OTLP pusher.

    The OTLP side (SDK data model, exporter, protobuf) is built only when OTLP is
    configured or its data is asked for: an agent that only serves /metrics never
    imports it (measured: ~20 MiB of RSS, docs/performance.md)."""

    def __init__(self, store: SeriesStore, node: str, settings: Settings | None = None) -> None:
        self.store = store
        self.node = node
        self.otlp: OtlpPusher | None = None
        if settings is not None and otlp_url.metrics_url(settings):
            from kpodmetrics.export.otlp import OtlpPusher

            self.otlp = OtlpPusher.from_settings(settings, self.otlp_metrics,
                                                 on_delivered=self.otlp_producer.confirm,
                                                 resource=self.resource)
        self._render_lock = threading.Lock()
        if self.otlp is not None:
            self.otlp.start()

    @functools.cached_property
    def resource(self) -> Resource:
        return resource_of(self.node)

    @functools.cached_property
    def otlp_producer(self) -> StoreProducer:
        from kpodmetrics.export.otel import OTLP_ATTRIBUTE_NAMES, StoreProducer

        return StoreProducer(self.store, rename=OTLP_ATTRIBUTE_NAMES)

    def otlp_metrics(self) -> list[Metric]:
        """What one OTLP push carries: the store and kpod_agent_up."""
        from opentelemetry.sdk.metrics.export import Gauge, Metric, NumberDataPoint

        up = Metric(AGENT_UP.name, AGENT_UP.help, "", Gauge([NumberDataPoint(
            {}, 0, self.store.collected_ns, 1)]))
        return [*self.otlp_producer.produce(), up]

    def render(self) -> bytes:
        """Prometheus text exposition (format 0.0.4) of everything, from the store."""
        return self._render(promtext.render)

    def render_gzip(self) -> bytes:
        """The same exposition gzip-compressed as it is rendered (what /metrics keeps)."""
        return self._render(promtext.render_gzip)

    def _render(self, fmt: Callable[[list[tuple[Family, list[Series]]]], bytes]) -> bytes:
        up = (AGENT_UP, [Series(labels=(), owner_key="", start_ns=0, value=1.0)])

        def render(view: list[tuple[Family, list[Series]]]) -> bytes:
            view.append(up)
            view.sort(key=lambda fr: fr[0].name)
            return fmt(view)

        with self._render_lock:
            return self.store.read_live(render)

    def push(self) -> None:
        """Ask the OTLP pusher for a push of the current state (never blocks)."""
        if self.otlp is not None:
            self.otlp.trigger()

    def shutdown(self) -> None:
        if self.otlp is not None:
            self.otlp.shutdown()

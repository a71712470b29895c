"""One data model, two exits: the hand-written exposition, the SDK's Prometheus rendering
of the same store (the test reference, tests/sdk_reference.py) and the OTLP request the
exporter encodes all carry the same numbers, and no SDK state grows per pod."""

from __future__ import annotations

import gzip
import math

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from kpodmetrics.export.otel import OTLP_ATTRIBUTE_NAMES, metrics_data
from kpodmetrics.export.pipeline import Pipeline
from kpodmetrics.export.promtext import fmt_value
from kpodmetrics.export.store import SeriesStore
from kpodmetrics.histogram import cumulative_at
from tests.otlp_receiver import flatten, parse_exposition
from tests.sdk_reference import SdkPrometheus
from tests.unit.export_helpers import FakeResolver, cycle_samples

NODE = (("node", "n1"),)
INVERSE = {v: k for k, v in OTLP_ATTRIBUTE_NAMES.items()}


def build(n: int = 300) -> tuple[SeriesStore, FakeResolver, Pipeline, SdkPrometheus]:
    r = FakeResolver()
    r.live = set(range(n))
    store = SeriesStore(NODE)
    store.apply(cycle_samples(range(n)), r)
    store.apply(cycle_samples(range(n), step=3), r)
    return store, r, Pipeline(store, "n1"), SdkPrometheus(store)


def otlp_request(pipe: Pipeline) -> ExportMetricsServiceRequest:
    """What one push sends: the pipeline's metrics as the exporter encodes them."""
    data = metrics_data(pipe.resource, pipe.otlp_metrics())
    req = ExportMetricsServiceRequest()
    req.ParseFromString(encode_metrics(data).SerializeToString())  # over the wire and back
    return req


def test_three_renderings_agree_number_for_number() -> None:
    _store, _, pipe, ref = build()
    hand = parse_exposition(pipe.render())
    sdk = parse_exposition(ref.render())
    otlp = flatten(otlp_request(pipe), INVERSE)
    assert len(hand) > 300 * 3
    assert hand == sdk
    assert hand == otlp


def test_gzip_exposition_is_the_sdk_rendering_too() -> None:
    """What /metrics keeps (compressed family by family) decodes to the same numbers."""
    _store, _, pipe, ref = build()
    assert parse_exposition(gzip.decompress(pipe.render_gzip())) == parse_exposition(ref.render())


def test_values_match_the_store_directly() -> None:
    """Independent of any renderer: recompute one pod's buckets from its raw slots."""
    store, _, pipe, _ = build(20)
    hand = parse_exposition(pipe.render())
    fam, rows = next((f, rows) for f, rows in store.snapshot()
                     if f.name == "kpod_cpu_runqueue_latency_seconds")
    s = next(x for x in rows if dict(x.labels)["pod"] == "pod-7")
    base = tuple(sorted(dict(s.labels).items()))
    cum = cumulative_at(s.slots, fam.bucket_exponents)
    for k, c in zip(fam.bucket_exponents, cum, strict=True):
        le = repr((2.0 ** k) * 1e-9)
        assert hand[(fam.name + "_bucket", tuple(sorted({**dict(base), "le": le}.items())))] == c
    assert hand[(fam.name + "_count", base)] == sum(s.slots)
    assert math.isclose(hand[(fam.name + "_sum", base)], s.total * 1e-9)
    # the open-ended last slot only reaches +Inf
    inf = hand[(fam.name + "_bucket", tuple(sorted({**dict(base), "le": "+Inf"}.items())))]
    assert inf == sum(s.slots) and inf - cum[-1] >= s.slots[-1]


def test_otlp_histograms_are_explicit_with_the_prometheus_bounds() -> None:
    _, _, pipe, _ = build(5)
    req = otlp_request(pipe)
    hists = [m for rm in req.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
             if m.WhichOneof("data") == "histogram"]
    assert hists
    for m in hists:
        for p in m.histogram.data_points:
            assert list(p.explicit_bounds) == [float(x) for x in
                                               [(2.0 ** k) * 1e-9 for k in range(10, 31, 2)]]
            assert len(p.bucket_counts) == len(p.explicit_bounds) + 1
            assert not p.HasField("min") and not p.HasField("max")
    rm = req.resource_metrics[0]
    res = {a.key: a.value.string_value for a in rm.resource.attributes}
    assert res["service.name"] == "kpod-metrics" and res["k8s.node.name"] == "n1"
    attrs = {a.key for a in hists[0].histogram.data_points[0].attributes}
    assert {"k8s.namespace.name", "k8s.pod.name", "k8s.container.name", "k8s.node.name"} <= attrs


def _sdk_attribute_sets(ref: SdkPrometheus) -> int:
    """Attribute sets the SDK holds in its own aggregation storage (private internals,
    read only to verify that pod series never land there)."""
    consumer = ref.provider._measurement_consumer  # type: ignore[attr-defined]
    total = 0
    for storage in consumer._reader_storages.values():
        for matches in storage._instrument_view_instrument_matches.values():
            for m in matches:
                total += len(m._attributes_aggregation)
    return total


def test_sdk_keeps_no_per_pod_state_and_gone_pods_leave_both_exits() -> None:
    store, r, pipe, ref = build(500)
    ref.render()
    otlp_request(pipe)
    held = _sdk_attribute_sets(ref)
    assert held <= 2  # kpod_agent_up once per reader, nothing per pod
    r.remove(list(range(500)))
    store.apply([], r)
    assert not [k for k in parse_exposition(ref.render()) if k[0] != "kpod_agent_up"]
    assert not [k for k in parse_exposition(pipe.render()) if k[0] != "kpod_agent_up"]
    assert not [k for k in flatten(otlp_request(pipe)) if k[0] != "kpod_agent_up"]
    assert _sdk_attribute_sets(ref) == held


def test_label_escaping_and_special_values() -> None:
    from kpodmetrics.export.promtext import render
    from kpodmetrics.export.store import Series
    from kpodmetrics.families import Family, FamilyType

    fam = Family("kpod_test_gauge", FamilyType.GAUGE, 'help with \\ and\nnewline')
    rows = [Series((("pod", 'a"b\\c\nd'),), "o", 0, 1.25),
            Series((("pod", "inf"),), "o", 0, math.inf), Series((("pod", "nan"),), "o", 0, math.nan)]
    parsed = parse_exposition(render([(fam, rows)]))
    assert parsed[("kpod_test_gauge", (("pod", 'a"b\\c\nd'),))] == 1.25
    assert parsed[("kpod_test_gauge", (("pod", "inf"),))] == math.inf
    assert math.isnan(parsed[("kpod_test_gauge", (("pod", "nan"),))])
    assert fmt_value(1e21) == "1e+21" and fmt_value(-math.inf) == "-Inf"

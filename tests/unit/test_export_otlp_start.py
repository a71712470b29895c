"""OTLP start times through a real receiver: a counter whose first value is a kernel
total (the cgroup's history from before the agent saw it) arrives as a true reset
point (start = time) until a push carrying it was delivered, then with its first
reading as start; a delta series starts at the collection before its first delta.
The values stay those of /metrics.

Oracles: the store's collection times (`collected_ns`, read before each push) and
the raw values the test hands in."""

from __future__ import annotations

from kpodmetrics import config
from kpodmetrics.export.otel import OTLP_ATTRIBUTE_NAMES
from kpodmetrics.export.pipeline import Pipeline
from kpodmetrics.export.store import SeriesStore
from kpodmetrics.samples import Kind, Sample
from tests.otlp_receiver import OtlpReceiver, flatten, parse_exposition

from .test_store import C, FakeResolver

INVERSE = {v: k for k, v in OTLP_ATTRIBUTE_NAMES.items()}
Point = tuple[int, int, float]


def points(rx: OtlpReceiver, n: int) -> dict[str, Point]:
    """cgroup label -> (start, time, value) of the n-th request's test counter."""
    req = rx.wait_for(n)[n - 1].request
    out: dict[str, Point] = {}
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == C.name:
                    for p in m.sum.data_points:
                        cg = next(a.value.string_value for a in p.attributes if a.key == "cgroup")
                        out[cg] = (p.start_time_unix_nano, p.time_unix_nano, p.as_double)
    return out


def test_kernel_totals_start_as_reset_points_deltas_at_the_previous_collection() -> None:
    rx = OtlpReceiver().start()
    s = config.load({}, {"KPOD_POLL_INTERVAL": "1s",
                         "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{rx.port}"})
    r = FakeResolver({1: "/old", 2: "/bpf", 3: "/late", 4: "/new"})
    store = SeriesStore()
    pipe = Pipeline(store, "n1", s)
    assert pipe.otlp is not None
    try:
        created = store.collected_ns  # 0: nothing collected yet
        store.apply([Sample(C, 1, 5000.0, Kind.CUMULATIVE), Sample(C, 2, 3.0)], r)
        t1 = store.collected_ns
        assert t1 > created
        assert pipe.otlp.push_once()
        p = points(rx, 1)
        assert p["/old"] == (t1, t1, 5000.0)  # true reset point: the history is no increase
        assert p["/bpf"][1] == t1 and p["/bpf"][0] < t1 and p["/bpf"][2] == 3.0

        store.apply([Sample(C, 1, 5100.0, Kind.CUMULATIVE), Sample(C, 2, 1.0),
                     Sample(C, 3, 2.0)], r)
        t2 = store.collected_ns
        assert pipe.otlp.push_once()
        p = points(rx, 2)
        assert p["/old"] == (t1, t2, 5100.0)  # growth since the first reading: 100
        assert p["/bpf"][2] == 4.0
        assert p["/late"] == (t1, t2, 2.0)  # its delta covers (t1, t2]

        # a push that fails: the new kernel total stays a reset point until one arrives
        store.apply([Sample(C, 4, 7000.0, Kind.CUMULATIVE)], r)
        t3 = store.collected_ns
        rx.fail_with = 400
        assert not pipe.otlp.push_once()
        rx.fail_with = 0
        store.apply([Sample(C, 4, 7010.0, Kind.CUMULATIVE)], r)
        t4 = store.collected_ns
        assert pipe.otlp.push_once()
        p = points(rx, 3)
        assert p["/new"] == (t4, t4, 7010.0)
        assert p["/old"] == (t1, t4, 5100.0)
        store.apply([Sample(C, 4, 7020.0, Kind.CUMULATIVE)], r)
        t5 = store.collected_ns
        assert pipe.otlp.push_once()
        p = points(rx, 4)
        assert p["/new"] == (t3, t5, 7020.0)
        # the values are those of /metrics, on both exits
        assert flatten(rx.wait_for(4)[3].request, INVERSE) == parse_exposition(pipe.render())
    finally:
        pipe.shutdown()
        rx.stop()

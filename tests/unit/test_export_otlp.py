"""OTLP push: a real HTTP receiver decodes what the pipeline pushes; it matches /metrics.
A dead or failing endpoint is retried, counted and never blocks the caller."""

from __future__ import annotations

import socket
import time

from kpodmetrics import config
from kpodmetrics.export.otel import OTLP_ATTRIBUTE_NAMES
from kpodmetrics.export.otlp import metrics_url
from kpodmetrics.export.pipeline import Pipeline
from kpodmetrics.export.store import SeriesStore
from tests.otlp_receiver import OtlpReceiver, flatten, parse_exposition
from tests.unit.export_helpers import FakeResolver, cycle_samples

INVERSE = {v: k for k, v in OTLP_ATTRIBUTE_NAMES.items()}


def settings(**env: str) -> config.Settings:
    return config.load({}, {"KPOD_POLL_INTERVAL": "0.5s", **env})


def make(s: config.Settings) -> tuple[SeriesStore, FakeResolver, Pipeline]:
    r = FakeResolver()
    r.live = set(range(50))
    store = SeriesStore((("node", "n1"),))
    store.apply(cycle_samples(range(50)), r)
    return store, r, Pipeline(store, "n1", s)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_endpoint_resolution() -> None:
    assert metrics_url(settings(OTEL_EXPORTER_OTLP_ENDPOINT="http://c:4318/")) == \
        "http://c:4318/v1/metrics"
    assert metrics_url(settings(OTEL_EXPORTER_OTLP_ENDPOINT="http://c:4318",
                                OTEL_EXPORTER_OTLP_METRICS_ENDPOINT="http://m:1/x")) == "http://m:1/x"
    assert metrics_url(settings()) == ""
    assert make(settings())[2].otlp is None


def test_push_matches_prometheus_and_carries_headers() -> None:
    rx = OtlpReceiver().start()
    try:
        s = settings(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{rx.port}",
                     OTEL_EXPORTER_OTLP_HEADERS="x-tenant=team%20a,authorization=Bearer t0k")
        store, r, pipe = make(s)
        try:
            assert pipe.otlp is not None
            pipe.push()
            got = rx.wait_for(1)
            assert got[0].headers["x-tenant"] == "team a"
            assert got[0].headers["authorization"] == "Bearer t0k"
            prom = parse_exposition(pipe.render())
            assert flatten(got[0].request, INVERSE) == prom
            # next cycle: new numbers on both exits, still equal
            store.apply(cycle_samples(range(50), step=4), r)
            deadline = time.monotonic() + 10
            while pipe.otlp.snapshot().pushes < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            pipe.push()
            got = rx.wait_for(2)
            assert flatten(got[1].request, INVERSE) == parse_exposition(pipe.render())
            st = pipe.otlp.snapshot()
            assert st.failures == 0 and st.retries == 0
        finally:
            pipe.shutdown()
    finally:
        rx.stop()


def test_dead_endpoint_is_counted_backed_off_and_never_blocks() -> None:
    s = settings(OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=f"http://127.0.0.1:{free_port()}/v1/metrics")
    _, _, pipe = make(s)
    assert pipe.otlp is not None
    try:
        worst = 0.0
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            pipe.push()
            worst = max(worst, time.perf_counter() - t0)
            time.sleep(0.1)
        st = pipe.otlp.snapshot()
        assert worst < 0.05, f"push() blocked the caller for {worst:.3f}s"
        assert st.failures >= 2 and st.failures == st.pushes
        assert st.retries >= st.pushes  # the SDK retried connection errors inside each push
        assert st.skipped > 0  # back-off: not every cycle tried again
        assert st.consecutive_failures == st.failures
    finally:
        pipe.shutdown()


def test_retryable_status_is_retried_then_recovers() -> None:
    rx = OtlpReceiver(fail_with=503).start()
    try:
        s = settings(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{rx.port}",
                     KPOD_POLL_INTERVAL="3s")  # push timeout 3 s: room for one SDK retry
        _, _, pipe = make(s)
        assert pipe.otlp is not None
        try:
            assert pipe.otlp.push_once() is False
            st = pipe.otlp.snapshot()
            assert st.failures == 1 and st.retries >= 1
            rx.fail_with = 0
            assert pipe.otlp.push_once() is True
            assert pipe.otlp.snapshot().consecutive_failures == 0
            assert len(rx.wait_for(1)) == 1
        finally:
            pipe.shutdown()
    finally:
        rx.stop()

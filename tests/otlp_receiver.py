"""A minimal OTLP/HTTP metrics receiver for tests: decodes every request with
opentelemetry-proto and keeps them, so tests compare what was pushed with /metrics.

Runs its own event loop in a thread so that synchronous tests (and the agent as a
subprocess) can use it. `fail_with` makes it answer every request with that status.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)


@dataclass
class Received:
    headers: dict[str, str]
    request: ExportMetricsServiceRequest


@dataclass
class OtlpReceiver:
    host: str = "127.0.0.1"
    fail_with: int = 0
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None
    _cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1/metrics"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if body[:2] == b"\x1f\x8b":  # aiohttp may already have inflated it
            body = gzip.decompress(body)
        if self.fail_with:
            return web.Response(status=self.fail_with)
        msg = ExportMetricsServiceRequest()
        msg.ParseFromString(body)
        with self._cond:
            self.received.append(Received({k.lower(): v for k, v in request.headers.items()}, msg))
            self._cond.notify_all()
        return web.Response(body=ExportMetricsServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    def start(self) -> OtlpReceiver:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application(client_max_size=256 * 1024 * 1024)
            app.router.add_post("/v1/metrics", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.host, self.port)
            loop.run_until_complete(site.start())
            server: Any = site._server
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="otlp-receiver", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def wait_for(self, n: int, timeout: float = 20.0) -> list[Received]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.received) >= n, timeout)
            return list(self.received)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)


def flatten(req: ExportMetricsServiceRequest, rename: dict[str, str] | None = None
            ) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """OTLP points as Prometheus-style samples: (sample name, sorted labels) -> value.

    Histograms become cumulative `_bucket{le}`, `_count` and `_sum` so the result can be
    compared with a parsed exposition; `rename` maps OTLP attribute names back."""
    rename = rename or {}
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                pts = getattr(m, kind).data_points
                for p in pts:
                    labels = {rename.get(a.key, a.key): a.value.string_value for a in p.attributes}
                    if kind == "histogram":
                        running = 0
                        for bound, c in zip([*p.explicit_bounds, float("inf")], p.bucket_counts,
                                            strict=True):
                            running += c
                            le = "+Inf" if bound == float("inf") else repr(float(bound))
                            out[(m.name + "_bucket", tuple(sorted({**labels, "le": le}.items())))] \
                                = float(running)
                        key = tuple(sorted(labels.items()))
                        out[(m.name + "_count", key)] = float(p.count)
                        out[(m.name + "_sum", key)] = p.sum
                    else:
                        v = p.as_double if p.WhichOneof("value") == "as_double" else p.as_int
                        out[(m.name, tuple(sorted(labels.items())))] = float(v)
    return out


def parse_exposition(text: str | bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text -> (sample name, sorted labels) -> value, with `le` normalised
    the way `flatten` writes it. Uses prometheus_client's parser: an independent reader."""
    from prometheus_client.parser import text_string_to_metric_families

    if isinstance(text, bytes):
        text = text.decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            labels = dict(s.labels)
            if "le" in labels:
                le = float(labels["le"])
                labels["le"] = "+Inf" if le == float("inf") else repr(le)
            key = (s.name, tuple(sorted(labels.items())))
            assert key not in out, f"duplicate sample {key}"
            out[key] = float(s.value)
    return out

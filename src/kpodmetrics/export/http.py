"""HTTP endpoints: cached /metrics bytes, health, readiness, a landing page.

A scrape never touches the kernel or the SDK: it serves the bytes rendered after the
last collection (gzip-compressed once, on first request for it).
"""

from __future__ import annotations

import gzip
import html
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_REQUEST_BYTES = 16 * 1024


@dataclass
class Exposition:
    """The latest rendered exposition and its lazily built gzip form."""

    body: bytes = b""
    _gz: bytes | None = field(default=None, repr=False)

    def set(self, body: bytes) -> None:
        self.body = body
        self._gz = None

    def gzipped(self) -> bytes:
        if self._gz is None:
            self._gz = gzip.compress(self.body, compresslevel=1)
        return self._gz


@dataclass
class HttpState:
    exposition: Exposition
    is_ready: Callable[[], bool]
    landing: Callable[[], list[tuple[str, str, str]]]
    """(collector, state, reason) rows for the landing page."""


def make_app(state: HttpState) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)

    async def metrics(request: web.Request) -> web.StreamResponse:
        exp = state.exposition
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            return web.Response(body=exp.gzipped(), headers={
                "Content-Type": CONTENT_TYPE, "Content-Encoding": "gzip", "Vary": "Accept-Encoding",
            })
        return web.Response(body=exp.body, headers={"Content-Type": CONTENT_TYPE,
                                                    "Vary": "Accept-Encoding"})

    async def healthz(request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.StreamResponse:
        if state.is_ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready: first collection not done\n")

    async def landing(request: web.Request) -> web.StreamResponse:
        rows = "".join(
            f"<tr><td>{html.escape(c)}</td><td>{html.escape(s)}</td><td>{html.escape(r)}</td></tr>"
            for c, s, r in state.landing()
        )
        page = (
            "<!doctype html><html><head><title>kpod-metrics</title></head><body>"
            "<h1>kpod-metrics</h1><p><a href=\"/metrics\">/metrics</a> · "
            "<a href=\"/healthz\">/healthz</a> · <a href=\"/readyz\">/readyz</a></p>"
            "<table border=1><tr><th>collector</th><th>state</th><th>reason</th></tr>"
            f"{rows}</table></body></html>"
        )
        return web.Response(text=page, content_type="text/html")

    for path, handler in (("/metrics", metrics), ("/actuator/prometheus", metrics),
                          ("/healthz", healthz), ("/readyz", readyz), ("/", landing)):
        app.router.add_get(path, handler)  # add_get also answers HEAD
    return app

"""HTTP endpoints: cached /metrics bytes, health, readiness, a landing page.

A scrape never touches the kernel, the store or the SDK: it serves the bytes rendered
after the last collection (gzip-compressed once per cycle, on first request for it),
so ten concurrent scrapers cost what one does. The one exception is a few bytes computed
at scrape time (`HttpState.live`, e.g. the age of the last cycle, which a cached body
could never show growing); they are appended to the cached bytes, and to its gzip as a
second gzip member (RFC 1952 allows several; decoders read them as one stream).
Only GET and HEAD exist (405 for other methods on known paths, 404 for unknown paths);
requests carrying a body or oversized headers are refused before any work is done.
"""

from __future__ import annotations

import asyncio
import gzip
import html
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_REQUEST_BYTES = 16 * 1024
"""Cap on a request body (we accept none) and on the size of all headers together."""
METRICS_PATHS = ("/metrics", "/actuator/prometheus")


@dataclass
class Exposition:
    """The latest rendered exposition, kept in its gzip form only.

    Scrapers ask for gzip (Prometheus always does), and the plain text is ten times
    larger: 13 MB at 1,000 cgroups that would stay resident between cycles. A plain
    request gets it decompressed for that request (`plain`, off the event loop). The
    render worker compresses (Pipeline.render_gzip), so the event loop never spends
    the ~40 ms per 10 MB gzip level 1 costs while scrapers wait."""

    _gz: bytes = field(default=gzip.compress(b"", compresslevel=1), repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def set_gzipped(self, gz: bytes) -> None:
        with self._lock:
            self._gz = gz

    def set(self, body: bytes) -> None:
        """Store a plain exposition (compressed here)."""
        self.set_gzipped(gzip.compress(body, compresslevel=1))

    def gzipped(self) -> bytes:
        with self._lock:
            return self._gz

    def plain(self) -> bytes:
        return gzip.decompress(self.gzipped())


@dataclass
class HttpState:
    exposition: Exposition
    is_ready: Callable[[], bool]
    landing: Callable[[], list[tuple[str, str, str]]]
    """(collector, state, reason) rows for the landing page."""
    not_ready_reason: Callable[[], str] = lambda: "first collection not done"
    signals: Callable[[], list[tuple[str, str, str, str, str]]] = list
    """(collector, signal, families, variant or "none", reason) rows: what feeds each
    kernel signal here, so "cannot see here" is told apart from "nothing happened"."""
    live: Callable[[], bytes] = lambda: b""
    """Exposition lines computed per scrape, appended after the cached body."""


def accepts_gzip(header: str) -> bool:
    """True when Accept-Encoding allows gzip (an explicit q=0 refuses it)."""
    for part in header.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "*"):
            continue
        q = params.strip().lower()
        if q.startswith("q="):
            try:
                return float(q[2:]) > 0
            except ValueError:
                return False
        return True
    return False


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _bounded(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse bodies (no endpoint takes one) and oversized headers up front."""
    length = request.content_length
    if (length or 0) > 0 or request.headers.get("Transfer-Encoding"):
        return web.Response(status=413, text="request body not accepted\n")
    if sum(len(k) + len(v) for k, v in request.raw_headers) > MAX_REQUEST_BYTES:
        return web.Response(status=431, text="request headers too large\n")
    return await handler(request)


def make_app(state: HttpState) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[_bounded],
                          handler_args={"max_field_size": 8190, "max_line_size": 8190})

    async def metrics(request: web.Request) -> web.StreamResponse:
        exp = state.exposition
        headers = {"Content-Type": CONTENT_TYPE, "Vary": "Accept-Encoding",
                   "Cache-Control": "no-store"}
        live = state.live()
        if accepts_gzip(request.headers.get("Accept-Encoding", "")):
            headers["Content-Encoding"] = "gzip"
            body = exp.gzipped()
            if live:
                body += gzip.compress(live, compresslevel=1)
        else:
            body = await asyncio.to_thread(exp.plain) + live
        return web.Response(body=body, headers=headers)

    async def healthz(request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.StreamResponse:
        if state.is_ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {state.not_ready_reason()}\n")

    async def landing(request: web.Request) -> web.StreamResponse:
        rows = "".join(
            f"<tr><td>{html.escape(c)}</td><td>{html.escape(s)}</td><td>{html.escape(r)}</td></tr>"
            for c, s, r in state.landing()
        )
        signals = "".join(
            "<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in row) + "</tr>"
            for row in state.signals()
        )
        links = " · ".join(f'<a href="{p}">{p}</a>'
                           for p in (*METRICS_PATHS, "/healthz", "/readyz"))
        page = (
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>kpod-metrics</title>"
            f"</head><body><h1>kpod-metrics</h1><p>{links}</p>"
            "<table border=1><tr><th>collector</th><th>state</th><th>reason</th></tr>"
            f"{rows}</table>"
            "<h2>Kernel signals</h2><p>A signal without a program variant (none) cannot be "
            "seen on this kernel: its families are not exported, which is not zero.</p>"
            "<table border=1><tr><th>collector</th><th>signal</th><th>families</th>"
            f"<th>variant</th><th>reason</th></tr>{signals}</table></body></html>"
        )
        return web.Response(text=page, content_type="text/html")

    for path in METRICS_PATHS:
        app.router.add_get(path, metrics)  # add_get also answers HEAD; others get 405
    for path, handler in (("/healthz", healthz), ("/readyz", readyz), ("/", landing)):
        app.router.add_get(path, handler)
    return app

"""HTTP: cached bytes, gzip, Vary, HEAD, 405/404, bounded requests, 10 concurrent scrapers."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from kpodmetrics.export.http import Exposition, HttpState, accepts_gzip, make_app

BODY_A = b"".join(b'kpod_a_total{pod="p%d"} %d.0\n' % (i, i) for i in range(20000))
BODY_B = b"".join(b'kpod_b_total{pod="p%d"} %d.0\n' % (i, i) for i in range(20000))


@pytest.fixture
async def server() -> AsyncIterator[tuple[TestServer, Exposition, list[bool]]]:
    exp = Exposition()
    exp.set(BODY_A)
    ready = [False]
    state = HttpState(exp, lambda: ready[0], lambda: [("cpu", "up", ""),
                                                      ("net", "down", "attach failed: <x>")],
                      signals=lambda: [("net", "tcp_send", "kpod_net_tcp_sent_bytes_total",
                                        "none", "tp_btf: <no tracepoint>")])
    srv = TestServer(make_app(state), host="127.0.0.1")
    await srv.start_server()
    yield srv, exp, ready
    await srv.close()


async def test_get_head_gzip_vary(server: tuple[TestServer, Exposition, list[bool]]) -> None:
    srv, _, _ = server
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        for path in ("/metrics", "/actuator/prometheus"):
            async with s.get(srv.make_url(path), headers={"Accept-Encoding": "identity"}) as r:
                assert r.status == 200 and await r.read() == BODY_A
                assert r.headers["Vary"] == "Accept-Encoding"
                assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            async with s.get(srv.make_url(path), headers={"Accept-Encoding": "gzip"}) as r:
                assert r.headers["Content-Encoding"] == "gzip"
                assert gzip.decompress(await r.read()) == BODY_A
            async with s.head(srv.make_url(path)) as r:
                assert r.status == 200 and await r.read() == b""
        async with s.get(srv.make_url("/metrics"), headers={"Accept-Encoding": "gzip;q=0"}) as r:
            assert "Content-Encoding" not in r.headers


async def test_methods_paths_and_size_limits(
        server: tuple[TestServer, Exposition, list[bool]]) -> None:
    srv, _, _ = server
    async with aiohttp.ClientSession() as s:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            async with s.request(method, srv.make_url("/metrics")) as r:
                assert r.status == 405
        for path in ("/metric", "/metrics/x", "/admin", "/healthz/"):
            async with s.get(srv.make_url(path)) as r:
                assert r.status == 404
        async with s.get(srv.make_url("/metrics"), data=b"x" * 100) as r:
            assert r.status == 413
        async with s.get(srv.make_url("/metrics"), headers={"X-Big": "a" * 20000}) as r:
            assert r.status in (400, 431)
        many = {f"X-H{i}": "a" * 4000 for i in range(6)}
        async with s.get(srv.make_url("/metrics"), headers=many) as r:
            assert r.status == 431


async def test_readyz_healthz_landing(server: tuple[TestServer, Exposition, list[bool]]) -> None:
    srv, _, ready = server
    async with aiohttp.ClientSession() as s:
        async with s.get(srv.make_url("/healthz")) as r:
            assert r.status == 200
        async with s.get(srv.make_url("/readyz")) as r:
            assert r.status == 503 and "first collection" in await r.text()
        ready[0] = True
        async with s.get(srv.make_url("/readyz")) as r:
            assert r.status == 200
        async with s.get(srv.make_url("/")) as r:
            page = await r.text()
        assert "attach failed: &lt;x&gt;" in page and 'href="/metrics"' in page
        assert 'href="/actuator/prometheus"' in page and "<td>down</td>" in page
        # the signals table: what cannot be seen here, and why
        assert ("<td>tcp_send</td><td>kpod_net_tcp_sent_bytes_total</td><td>none</td>"
                "<td>tp_btf: &lt;no tracepoint&gt;</td>") in page


async def test_ten_concurrent_clients_while_the_exposition_changes(
        server: tuple[TestServer, Exposition, list[bool]]) -> None:
    """Every response is one complete rendering (never a mix), under concurrent swaps."""
    srv, exp, _ = server
    stop = asyncio.Event()
    latencies: list[float] = []

    async def swapper() -> None:
        flip = False
        while not stop.is_set():
            await asyncio.to_thread(exp.set, BODY_B if flip else BODY_A)
            flip = not flip
            await asyncio.sleep(0.002)

    async def client(i: int) -> None:
        async with aiohttp.ClientSession() as s:
            for _ in range(20):
                enc = "gzip" if i % 2 else "identity"
                t0 = time.perf_counter()
                async with s.get(srv.make_url("/metrics"),
                                 headers={"Accept-Encoding": enc}) as r:
                    body = await r.read()
                latencies.append(time.perf_counter() - t0)
                assert r.status == 200
                assert body in (BODY_A, BODY_B)

    sw = asyncio.create_task(swapper())
    await asyncio.gather(*(client(i) for i in range(10)))
    stop.set()
    await sw
    assert len(latencies) == 200


def test_accepts_gzip() -> None:
    assert accepts_gzip("gzip, deflate") and accepts_gzip("br;q=1.0, gzip;q=0.5")
    assert accepts_gzip("*") and not accepts_gzip("gzip;q=0") and not accepts_gzip("identity")
    assert not accepts_gzip("")

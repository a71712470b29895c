"""The Kubernetes API server black-holed (accepts TCP, never answers), answering
garbage, and slow (1 byte/s), through a fault proxy in front of the API test server:
the last pod mapping keeps serving, failures are counted, and once the server is
healthy again the watcher catches up with what changed meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from kpodmetrics.config import Settings
from kpodmetrics.pods import kubernetes
from tests.k8s_api_server import FakeApiServer, make_pod

pytestmark = [pytest.mark.chaos]
NODE = "node-chaos"
FAST = {"backoff_base": 0.05, "backoff_max": 0.5, "read_timeout": 3.0, "request_timeout": 2.0}
GARBAGE = b"\x16\x03\x01 not http at all \xff\xfe{{{\r\n\r\n"


class FaultProxy:
    """TCP proxy whose answers are "pass", "blackhole", "garbage" or "slow"."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.mode = "pass"
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        """Drop every open connection (the watcher has to come back through the fault)."""
        for w in list(self._conns):
            w.transport.abort()
        self._conns.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        try:
            if self.mode == "blackhole":
                while await reader.read(65536):  # accept, read, never answer
                    pass
                return
            if self.mode == "garbage":
                await reader.read(65536)
                writer.write(GARBAGE * 8)
                await writer.drain()
                return
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            self._conns.add(up_w)
            await asyncio.gather(self._pipe(reader, up_w, slow=False),
                                 self._pipe(up_r, writer, slow=True))
        except (ConnectionError, OSError):
            pass
        finally:
            self._conns.discard(writer)
            writer.transport.abort()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, slow: bool) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(65536):
                while slow and self.mode == "slow" and data:
                    dst.write(data[:1])  # 1 byte/s while the fault lasts
                    await dst.drain()
                    data = data[1:]
                    await asyncio.sleep(1.0)
                dst.write(data)
                await dst.drain()
        dst.transport.abort()


def names(att: kubernetes.KubernetesAttribution) -> set[str]:
    return {f"{p.info.namespace}/{p.info.name}" for p in att.resolver._pods.values()}


async def until(cond: Callable[[], bool], timeout: float) -> float:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "condition not met in time"
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[FakeApiServer, FaultProxy,
                                                        kubernetes.KubernetesAttribution]]:
    srv = FakeApiServer()
    await srv.start()
    proxy = FaultProxy(srv.port)
    await proxy.start()
    kc = srv.write_kubeconfig(str(tmp_path / "kc"))
    cfg = json.loads(Path(kc).read_text())
    cfg["clusters"][0]["cluster"]["server"] = f"http://127.0.0.1:{proxy.port}"
    Path(kc).write_text(json.dumps(cfg))
    cg = tmp_path / "cgroup"
    cg.mkdir()
    for i in range(3):
        srv.add(make_pod(f"keep-{i}", node=NODE))
    s = Settings(node_name=NODE, kubeconfig=kc, cgroup_root=str(cg), grace_period=60.0)
    att = await kubernetes.start_kubernetes(s, None, startup_timeout=5.0, **FAST)
    try:
        await until(lambda: len(names(att)) == 3, 5)
        yield srv, proxy, att
    finally:
        await att.close()
        await proxy.close()
        await srv.close()


@pytest.mark.parametrize("mode", ["blackhole", "garbage", "slow"])
async def test_last_mapping_serves_and_the_watcher_recovers(
        setup: tuple[FakeApiServer, FaultProxy, kubernetes.KubernetesAttribution],
        mode: str) -> None:
    srv, proxy, att = setup
    before = names(att)
    errors0 = att.watcher.stats.errors
    proxy.mode = mode
    proxy.cut()
    gone = next(iter(sorted(before)))
    srv.delete(next(p["metadata"]["uid"] for p in srv.pods.values()
                    if f"default/{p['metadata']['name']}" == gone))
    srv.add(make_pod(f"new-{mode}", node=NODE))
    await asyncio.sleep(6.0)  # two read timeouts' worth of the fault
    # the last mapping still serves: nothing learned, nothing forgotten
    assert names(att) == before
    assert att.ready or mode == "slow"  # (a trickling watch is still "open")
    failures = att.watcher.stats.errors - errors0
    if mode != "slow":
        assert failures >= 1  # black hole: timed out; garbage: refused as malformed
    proxy.mode = "pass"
    if mode != "slow":
        proxy.cut()  # a healthy server again; the watcher comes back on its own
    took = await until(lambda: f"default/new-{mode}" in names(att)
                       and gone not in names(att), 20)
    print(f"\nFIGURE api-{mode}: mapping of {len(before)} pods kept for 6 s of fault, "
          f"{failures} failed calls counted, caught up {took:.2f}s after recovery")
    assert att.watcher.stats.malformed == 0 or mode == "garbage"

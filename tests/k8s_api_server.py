"""A Kubernetes API test server for pods, speaking the real list/watch wire protocol.

Why a server and not a mocked client: the agent must be driven through
kubernetes-asyncio exactly as in a cluster (kubeconfig, HTTP request, query
parameters, chunked watch stream), so bugs in how we call the client show up here.

What it implements (only what a pod watcher uses):

- `GET /api/v1/pods?fieldSelector=spec.nodeName=<n>` -> a PodList with
  `metadata.resourceVersion`;
- `...&watch=true&resourceVersion=<rv>&allowWatchBookmarks=true&timeoutSeconds=<s>`
  -> a chunked stream of JSON lines `{"type": ..., "object": ...}`, replaying the
  event history after `rv`, then live events; BOOKMARK events on demand or
  periodically; a `rv` older than the compacted history gets 410 Gone (as an ERROR
  event in the stream, or as an HTTP 410 status, selectable).

Faults on demand: `fail_next(status)` (e.g. 403, 500), `disconnect_watches()`,
`inject_raw(line)` (malformed data into open streams), `compact()` (forget history),
`stop()`/`start()` (the server is away, same port). `requests` records every query
so tests can check resumption.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Pod = dict[str, Any]


def make_pod(
    name: str,
    *,
    namespace: str = "default",
    node: str = "node-a",
    uid: str | None = None,
    containers: dict[str, str] | None = None,
    init_containers: dict[str, str] | None = None,
    ephemeral_containers: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    runtime: str = "containerd",
) -> Pod:
    """A pod as the API server serializes it; containers map name -> container id."""

    def statuses(items: dict[str, str] | None) -> list[dict[str, Any]]:
        return [
            {"name": n, "containerID": f"{runtime}://{cid}" if cid else "", "ready": True}
            for n, cid in (items or {}).items()
        ]

    pod: Pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid or str(uuid.uuid4()),
            "labels": dict(labels or {}),
            "annotations": dict(annotations or {}),
        },
        "spec": {"nodeName": node, "containers": [{"name": n} for n in containers or {}]},
        "status": {
            "phase": "Running",
            "containerStatuses": statuses(containers),
            "initContainerStatuses": statuses(init_containers),
            "ephemeralContainerStatuses": statuses(ephemeral_containers),
        },
    }
    return pod


def _flag(value: str | None) -> bool:
    """Booleans as the API server parses them (Go's strconv.ParseBool)."""
    return value in ("1", "t", "T", "true", "TRUE", "True")


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@dataclass
class _Watch:
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    node: str | None = None


class FakeApiServer:
    def __init__(self, *, gone_as_http: bool = False, bookmark_interval: float = 0.0) -> None:
        self.pods: dict[str, Pod] = {}  # uid -> pod
        self._rv = itertools.count(1000)
        self.resource_version = next(self._rv)
        self.history: list[tuple[int, str, Pod]] = []
        self.compacted_rv = 0
        self.gone_as_http = gone_as_http
        self.bookmark_interval = bookmark_interval
        self.requests: list[dict[str, str]] = []
        self.authorizations: list[str] = []
        """The Authorization header of each request, in order."""
        self._failures: list[tuple[int, dict[str, Any]]] = []
        self._watch_failures: list[tuple[int, dict[str, Any]]] = []
        self._watches: list[_Watch] = []
        self._streams: list[web.StreamResponse] = []
        self.app = web.Application()
        self.app.router.add_get("/api/v1/pods", self._pods)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.port = 0

    # -- lifecycle -----------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        if self._runner is None:
            self._runner = web.AppRunner(self.app, handler_cancellation=True)
            await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()
        if not self.port:
            server = self._site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Stop listening and cut every open watch (the API server is away)."""
        if self._site is not None:
            await self._site.stop()
            self._site = None
        await self.disconnect_watches()

    async def close(self) -> None:
        await self.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def write_kubeconfig(self, path: str, token: str = "test-token") -> str:
        """A kubeconfig pointing at this server (JSON is valid YAML)."""
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": self.url}}],
            "users": [{"name": "agent", "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "agent"}}],
            "current-context": "test",
        }
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(cfg, fh)
        return path

    # -- state changes (each is one event) ---------------------------------------------

    def _event(self, kind: str, pod: Pod) -> None:
        rv = next(self._rv)
        self.resource_version = rv
        pod = json.loads(json.dumps(pod))
        pod["metadata"]["resourceVersion"] = str(rv)
        self.history.append((rv, kind, pod))
        line = json.dumps({"type": kind, "object": pod}).encode() + b"\n"
        node = pod.get("spec", {}).get("nodeName")
        for w in self._watches:
            if w.node is None or w.node == node:
                w.queue.put_nowait(line)

    def add(self, pod: Pod) -> Pod:
        self.pods[pod["metadata"]["uid"]] = pod
        self._event("ADDED", pod)
        return pod

    def modify(self, pod: Pod) -> Pod:
        self.pods[pod["metadata"]["uid"]] = pod
        self._event("MODIFIED", pod)
        return pod

    def delete(self, uid: str, *, silently: bool = False) -> None:
        """Remove a pod; `silently` leaves no event (as if it was compacted away)."""
        pod = self.pods.pop(uid)
        if silently:
            self.resource_version = next(self._rv)
        else:
            self._event("DELETED", pod)

    def bookmark(self) -> None:
        line = json.dumps(
            {
                "type": "BOOKMARK",
                "object": {
                    "kind": "Pod",
                    "apiVersion": "v1",
                    "metadata": {"resourceVersion": str(self.resource_version)},
                },
            }
        ).encode()
        for w in self._watches:
            w.queue.put_nowait(line + b"\n")

    def compact(self) -> None:
        """Forget the history: any watch from an older resourceVersion gets 410."""
        self.history.clear()
        self.compacted_rv = self.resource_version

    def send_gone(self) -> None:
        """An ERROR event with a 410 Status into every open stream (etcd compaction)."""
        self.inject_raw(json.dumps({"type": "ERROR", "object": status(410, "Expired", "too old")}))

    def inject_raw(self, line: str | bytes) -> None:
        data = line.encode() if isinstance(line, str) else line
        for w in self._watches:
            w.queue.put_nowait(data + b"\n")

    def fail_next(self, code: int, n: int = 1, message: str = "", *, watch_only: bool = False) -> None:
        """The next `n` requests (or only watch requests) get HTTP `code` with a Status."""
        reason = {403: "Forbidden", 401: "Unauthorized", 410: "Gone"}.get(code, "InternalError")
        body = status(code, reason, message or f"injected {code}")
        target = self._watch_failures if watch_only else self._failures
        target.extend([(code, body)] * n)

    async def disconnect_watches(self, *, abrupt: bool = True) -> None:
        """End every open watch: cut the connection (`abrupt`) or end the stream cleanly
        (as a server-side timeout does)."""
        for w in list(self._watches):
            w.queue.put_nowait(None)
        if abrupt:
            for s in list(self._streams):
                req = s._req  # type: ignore[attr-defined]
                transport = req.transport if req is not None else None
                if transport is not None:
                    transport.close()
        await asyncio.sleep(0.01)

    @property
    def open_watches(self) -> int:
        return len(self._watches)

    # -- HTTP ------------------------------------------------------------------------

    def _selected(self, pod: Pod, node: str | None) -> bool:
        return node is None or pod.get("spec", {}).get("nodeName") == node

    async def _pods(self, request: web.Request) -> web.StreamResponse:
        q = dict(request.query)
        self.requests.append(q)
        self.authorizations.append(request.headers.get("Authorization", ""))
        if self._failures:
            code, body = self._failures.pop(0)
            return web.json_response(body, status=code)
        node: str | None = None
        selector = q.get("fieldSelector", "")
        if selector:
            key, _, value = selector.replace("==", "=").partition("=")
            if key != "spec.nodeName":
                return web.json_response(
                    status(400, "BadRequest", f"field label not supported: {key}"), status=400
                )
            node = value
        if _flag(q.get("watch")):
            if self._watch_failures:
                code, body = self._watch_failures.pop(0)
                return web.json_response(body, status=code)
            return await self._watch(request, q, node)
        items = [p for p in self.pods.values() if self._selected(p, node)]
        for p in items:
            p.setdefault("metadata", {}).setdefault("resourceVersion", str(self.resource_version))
        return web.json_response(
            {
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self.resource_version)},
                "items": items,
            }
        )

    async def _watch(
        self, request: web.Request, q: dict[str, str], node: str | None
    ) -> web.StreamResponse:
        rv = int(q.get("resourceVersion") or 0)
        gone = rv and rv < self.compacted_rv
        if gone and self.gone_as_http:
            return web.json_response(status(410, "Expired", "too old resource version"), status=410)
        w = _Watch(node=node)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        if gone:
            body = json.dumps({"type": "ERROR", "object": status(410, "Expired", "too old")})
            await resp.write(body.encode() + b"\n")
            return resp
        for ev_rv, kind, pod in self.history:
            if ev_rv > rv and self._selected(pod, node):
                await resp.write(json.dumps({"type": kind, "object": pod}).encode() + b"\n")
        self._watches.append(w)
        self._streams.append(resp)
        timeout = float(q.get("timeoutSeconds") or 3600)
        bookmarks = _flag(q.get("allowWatchBookmarks")) and self.bookmark_interval > 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    break
                wait = min(left, self.bookmark_interval) if bookmarks else left
                try:
                    item = await asyncio.wait_for(w.queue.get(), wait)
                except TimeoutError:
                    if bookmarks and loop.time() < deadline:
                        self.bookmark()
                    continue
                if item is None:
                    break
                await resp.write(item)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._watches.remove(w)
            self._streams.remove(resp)
        return resp

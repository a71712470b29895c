"""List-then-watch of this node's pods, as raw JSON.

Why hand-parse the stream instead of `kubernetes_asyncio.watch.Watch`: the agent must
survive any object the API server (or something pretending to be it) sends. Raw
JSON lines let us skip and count a malformed object without losing the stream,
cap the size of a line, and keep pods as small records instead of generated models
(which also cost ~65 MB of RSS just to import). The request itself goes through a
`PodsTransport` (apiclient.py: aiohttp with the cluster's credentials).

Protocol, as client-go's reflector does it:
1. LIST `pods?fieldSelector=spec.nodeName=<node>` -> replace the whole pod set
   (pods that vanished while we were away are deleted) and remember the list's
   resourceVersion;
2. WATCH from that resourceVersion with bookmarks; every event (and bookmark) moves
   the resourceVersion forward, so a dropped stream resumes where it stopped;
3. 410 Gone (HTTP status or an ERROR event) means the history is compacted: re-list;
4. any other failure: back off exponentially with jitter and retry; the resolver keeps
   serving the last known pods meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from kpodmetrics.pods.apiclient import PodsTransport
from kpodmetrics.pods.podinfo import MalformedPod, PodInfo, parse_pod

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 16 * 1024 * 1024


class PodSink(Protocol):
    def upsert(self, info: PodInfo) -> None: ...

    def delete(self, uid: str) -> None: ...

    def reconcile(self, pods: Iterable[PodInfo]) -> int: ...


class ApiError(Exception):
    """The API server answered with an error we retry."""


class AccessDenied(RuntimeError):
    """401/403: retrying will not help until someone fixes credentials or RBAC."""


class _Gone(Exception):
    """410: the resourceVersion we hold is too old; re-list."""


@dataclass(slots=True)
class WatchStats:
    lists: int = 0
    watches: int = 0
    events: int = 0
    bookmarks: int = 0
    malformed: int = 0
    """Objects or lines that were skipped because they are not usable."""
    relists_gone: int = 0
    errors: int = 0
    deleted_on_relist: int = 0
    last_error: str = ""


def _status_message(body: bytes) -> str:
    try:
        obj = json.loads(body)
        if isinstance(obj, dict) and isinstance(obj.get("message"), str):
            return str(obj["message"])
    except ValueError:
        pass
    return body[:200].decode("utf-8", "replace")


def backoff_delay(failures: int, base: float, cap: float, rng: Callable[[], float]) -> float:
    """Exponential back-off with "equal jitter": half fixed, half random, so that many
    agents restarting together spread out yet none retries immediately."""
    delay = min(cap, base * (2 ** max(0, failures - 1)))
    return float(delay / 2 + rng() * delay / 2)


class PodWatcher:
    def __init__(
        self,
        api: PodsTransport,
        node: str,
        sink: PodSink,
        *,
        label_keys: Sequence[str] = (),
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        watch_timeout: float = 300.0,
        read_timeout: float = 120.0,
        request_timeout: float = 30.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._api = api
        self.node = node
        self._sink = sink
        self._label_keys = tuple(label_keys)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.watch_timeout = watch_timeout
        self.read_timeout = read_timeout
        self.request_timeout = request_timeout
        self._rng = rng
        self.selector = f"spec.nodeName={node}"
        self.resource_version: str | None = None
        self.stats = WatchStats()
        self.ready = False
        """True once the first list succeeded (stays true while the API is away)."""
        self.access_error: AccessDenied | None = None
        self.settled = asyncio.Event()
        """Set once a watch stream is open or access was denied (start-up waits for it)."""
        self._last_bad_log = 0.0

    # -- main loop -----------------------------------------------------------------

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                if self.resource_version is None:
                    self.resource_version = await self._list()
                    self.ready = True
                started = time.monotonic()
                progressed = await self._watch(self.resource_version)
                self.access_error = None
                if progressed:
                    failures = 0
                if progressed or time.monotonic() - started >= 1.0:
                    continue
                # an empty stream that ended at once: do not spin on a broken server
                why = "watch stream ended immediately without events"
            except _Gone:
                self.stats.relists_gone += 1
                self.resource_version = None
                failures += 1
                if failures == 1:
                    continue  # compaction is routine: re-list at once, once
                why = "resourceVersion expired again (410 Gone)"
            except AccessDenied as exc:
                self.access_error = exc
                self.settled.set()
                why = str(exc)
            except asyncio.CancelledError:
                raise
            except (TimeoutError, ApiError, aiohttp.ClientError, OSError, ValueError) as exc:
                why = f"{type(exc).__name__}: {exc}"
            failures += 1
            self.stats.errors += 1
            self.stats.last_error = why
            delay = backoff_delay(failures, self.backoff_base, self.backoff_max, self._rng)
            log.warning("pod watch: %s; retrying in %.1fs", why, delay)
            await asyncio.sleep(delay)

    # -- list --------------------------------------------------------------------------

    async def _request(self, timeout: aiohttp.ClientTimeout, **params: str) -> aiohttp.ClientResponse:
        """The raw, unread response of GET /api/v1/pods for this node."""
        return await self._api.get_pods({"fieldSelector": self.selector, **params}, timeout)

    async def _list(self) -> str:
        resp = await self._request(aiohttp.ClientTimeout(total=self.request_timeout))
        try:
            await self._check_status(resp, "list")
            body = await resp.read()
        finally:
            resp.release()
        doc = json.loads(body)
        if not isinstance(doc, dict):
            raise ApiError("pod list is not a JSON object")
        meta = doc.get("metadata")
        rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
        items = doc.get("items")
        if not isinstance(rv, str) or not isinstance(items, list):
            raise ApiError("pod list has no metadata.resourceVersion or items")
        pods: list[PodInfo] = []
        for item in items:
            info = self._parse(item)
            if info is not None:
                pods.append(info)
        self.stats.deleted_on_relist += self._sink.reconcile(pods)
        self.stats.lists += 1
        return rv

    # -- watch -------------------------------------------------------------------------

    async def _watch(self, rv: str) -> bool:
        """Follow one watch stream until it ends; True if it delivered anything."""
        timeout = int(self.watch_timeout * (1 + self._rng()))
        resp = await self._request(
            aiohttp.ClientTimeout(connect=self.request_timeout, sock_read=self.read_timeout),
            watch="true",
            allowWatchBookmarks="true",
            resourceVersion=rv,
            timeoutSeconds=str(timeout),
        )
        progressed = False
        try:
            await self._check_status(resp, "watch")
            self.stats.watches += 1
            self.settled.set()
            buf = bytearray()
            skipping = False
            async for chunk in resp.content.iter_any():
                buf += chunk
                while True:
                    nl = buf.find(b"\n")
                    if nl < 0:
                        break
                    line = bytes(buf[:nl])
                    del buf[: nl + 1]
                    if skipping:
                        skipping = False
                        continue
                    if line.strip() and self._event(line):
                        progressed = True
                if len(buf) > MAX_LINE_BYTES:
                    self._bad(f"watch line longer than {MAX_LINE_BYTES} bytes")
                    buf.clear()
                    skipping = True
            if buf.strip() and not skipping and self._event(bytes(buf)):
                progressed = True
        except aiohttp.ClientPayloadError as exc:
            # the server (or a proxy) cut the stream: resume from where we are
            if not progressed:
                raise ApiError(f"watch stream broken: {exc}") from exc
        finally:
            resp.release()
        return progressed

    def _event(self, line: bytes) -> bool:
        """Apply one watch line; False if it was not a usable event (so a stream of
        garbage never counts as progress and cannot defeat the back-off)."""
        try:
            ev = json.loads(line)
        except ValueError:
            self._bad("watch line is not JSON")
            return False
        if not isinstance(ev, dict) or not isinstance(ev.get("object"), dict):
            self._bad("watch event has no object")
            return False
        kind, obj = ev.get("type"), ev["object"]
        if kind == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise _Gone()
            raise ApiError(f"watch ERROR event: {obj.get('code')} {obj.get('message')}")
        meta = obj.get("metadata")
        rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
        if kind == "BOOKMARK":
            if isinstance(rv, str) and rv:
                self.resource_version = rv
                self.stats.bookmarks += 1
                return True
            self._bad("bookmark without resourceVersion")
            return False
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            self._bad(f"unknown watch event type {kind!r}")
            return False
        self.stats.events += 1
        if isinstance(rv, str) and rv:
            self.resource_version = rv
        if kind == "DELETED":
            uid = meta.get("uid") if isinstance(meta, dict) else None
            if isinstance(uid, str) and uid:
                self._sink.delete(uid.lower())
                return True
            self._bad("DELETED event without metadata.uid")
            return False
        info = self._parse(obj)
        if info is None:
            return False
        self._sink.upsert(info)
        return True

    # -- helpers -----------------------------------------------------------------------

    def _parse(self, obj: Any) -> PodInfo | None:
        try:
            return parse_pod(obj, self._label_keys)
        except MalformedPod as exc:
            self._bad(f"malformed pod skipped: {exc}")
            return None

    def _bad(self, why: str) -> None:
        self.stats.malformed += 1
        now = time.monotonic()
        if now - self._last_bad_log >= 60:
            self._last_bad_log = now
            log.warning(
                "pod watch: %s (%d so far; logged once a minute)", why, self.stats.malformed
            )

    async def _check_status(self, resp: aiohttp.ClientResponse, verb: str) -> None:
        if resp.status == 200:
            return
        if resp.status == 410:
            raise _Gone()
        try:
            said = _status_message(await resp.content.read(64 * 1024))
        except (TimeoutError, aiohttp.ClientError):
            said = ""
        suffix = f" (API server: {said})" if said else ""
        if resp.status in (401, 403):
            raise AccessDenied(self._denied_message(resp.status, verb) + suffix)
        raise ApiError(f"{verb} pods: HTTP {resp.status} {resp.reason or ''}".rstrip() + suffix)

    def _denied_message(self, status: int, verb: str) -> str:
        if status == 401:
            return (
                "the Kubernetes API server rejected the agent's credentials (HTTP 401 "
                f"Unauthorized) on '{verb} pods': check the service account token or kubeconfig"
            )
        return (
            f"RBAC forbids verb '{verb}' on resource 'pods' (core API group, all namespaces, "
            f"fieldSelector {self.selector}) for the agent's identity (HTTP 403): grant its "
            "ClusterRole the verbs get, list and watch on pods"
        )

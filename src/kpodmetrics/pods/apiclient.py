"""The agent's HTTP access to the Kubernetes API: two GETs on `/api/v1/pods`, raw JSON.

Why our own: the pod watcher reads pods as raw JSON lines anyway (watcher.py), and
kubernetes-asyncio cannot be imported without its generated models (~65 MB of RSS).
aiohttp (already the agent's HTTP stack) does the request; `clusterconfig` says where
and with which credentials. Kubeconfigs that need a credential plugin use
`clientfallback.ClientTransport` instead, behind the same `PodsTransport` protocol.
"""

from __future__ import annotations

import base64
import contextlib
import os
import ssl
import tempfile
import time
from collections.abc import Mapping
from typing import Protocol

import aiohttp

from kpodmetrics.pods.clusterconfig import ApiAccess, ConfigError

PODS_PATH = "/api/v1/pods"
TOKEN_REREAD_SECONDS = 60.0
"""Bound service account tokens are rotated by the kubelet (about hourly): re-read."""


class PodsTransport(Protocol):
    """GET /api/v1/pods with these query parameters; the raw, unread response."""

    async def get_pods(
        self, params: Mapping[str, str], timeout: aiohttp.ClientTimeout
    ) -> aiohttp.ClientResponse: ...

    async def close(self) -> None: ...


def ssl_context(access: ApiAccess) -> ssl.SSLContext:
    """Server verification (CA file/data or the system store) and the client
    certificate, if any. Certificate data is written to a private temporary
    directory only for the load (the ssl module reads files)."""
    ctx = ssl.create_default_context()
    try:
        if access.ca_file:
            ctx.load_verify_locations(cafile=access.ca_file)
        if access.ca_data:
            ctx.load_verify_locations(cadata=access.ca_data.decode("ascii", "replace"))
        if not access.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if access.cert_file or access.cert_data:
            with tempfile.TemporaryDirectory(prefix="kpod-tls-") as tmp:
                cert = access.cert_file or _private_file(tmp, "cert.pem", access.cert_data)
                key = access.key_file or (
                    _private_file(tmp, "key.pem", access.key_data) if access.key_data else None)
                ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"{access.source}: TLS settings unusable: {exc}") from exc
    return ctx


def _private_file(directory: str, name: str, data: bytes) -> str:
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


class RawTransport:
    """aiohttp session against one API server (created on first use, in the loop)."""

    def __init__(self, access: ApiAccess) -> None:
        self.access = access
        self._ssl: ssl.SSLContext | bool = (
            ssl_context(access) if access.server.startswith("https://") else False)
        self._session: aiohttp.ClientSession | None = None
        self._token = access.token
        self._token_read_at = float("-inf")
        if access.token_file and not access.token:
            self._read_token()  # an unreadable token file is a start-up error

    def _read_token(self) -> None:
        try:
            with open(self.access.token_file, encoding="utf-8") as fh:
                self._token = fh.read().strip()
        except OSError as exc:
            if self._token_read_at == float("-inf"):
                raise ConfigError(
                    f"{self.access.source}: cannot read token file "
                    f"{self.access.token_file!r}: {exc.strerror or exc}") from exc
            # keep the last token: the kubelet swaps the file atomically, this is rare
        self._token_read_at = time.monotonic()

    def headers(self) -> dict[str, str]:
        out = {"Accept": "application/json"}
        if self.access.token_file and not self.access.token \
                and time.monotonic() - self._token_read_at >= TOKEN_REREAD_SECONDS:
            self._read_token()
        if self._token:
            out["Authorization"] = f"Bearer {self._token}"
        elif self.access.username:
            pair = f"{self.access.username}:{self.access.password}".encode()
            out["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        return out

    async def get_pods(
        self, params: Mapping[str, str], timeout: aiohttp.ClientTimeout
    ) -> aiohttp.ClientResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=True)
        return await self._session.get(
            self.access.server + PODS_PATH, params=dict(params), headers=self.headers(),
            ssl=self._ssl, timeout=timeout,
            server_hostname=self.access.tls_server_name or None,
        )

    async def close(self) -> None:
        if self._session is not None:
            with contextlib.suppress(Exception):
                await self._session.close()
            self._session = None

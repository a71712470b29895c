"""Kubernetes mode without the generated client: pods listed and watched as raw JSON
through our own aiohttp access (token, TLS with a client certificate), measured in a
fresh interpreter that must never import `kubernetes_asyncio`; a kubeconfig whose user
needs a credential plugin (`exec`) falls back to the client library and still works.

Oracles: the API test server's own record of the requests and their Authorization
header; `sys.modules` of the agent's interpreter; certificates made here by openssl."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from kpodmetrics.config import Settings
from kpodmetrics.pods import kubernetes
from tests.k8s_api_server import FakeApiServer, make_pod

NODE = "node-a"
PROBE = """
import asyncio, json, sys
from kpodmetrics.config import Settings
from kpodmetrics.pods import kubernetes

async def main():
    s = Settings(node_name=%r, kubeconfig=sys.argv[1], cgroup_root=sys.argv[2])
    att = await kubernetes.start_kubernetes(s, None, startup_timeout=10)
    for _ in range(200):
        if att.ready and att.watcher.stats.watches:
            break
        await asyncio.sleep(0.05)
    pods = sorted(p.info.name for p in att.resolver._pods.values())
    await att.close()
    client = sorted({m.split(".")[0] for m in sys.modules
                     if m.split(".")[0] == "kubernetes_asyncio"})
    print(json.dumps({"pods": pods, "client": client}))

asyncio.run(main())
""".replace("%r", repr(NODE))


@pytest.fixture
async def server() -> AsyncIterator[FakeApiServer]:
    srv = FakeApiServer()
    await srv.start()
    for name in ("a", "b", "c"):
        srv.add(make_pod(name, node=NODE))
    srv.add(make_pod("elsewhere", node="node-z"))
    yield srv
    await srv.close()


async def probe(kubeconfig: str, cgroup_root: Path) -> dict[str, Any]:
    cgroup_root.mkdir(exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PROBE, kubeconfig, str(cgroup_root),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-3000:]
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def test_token_kubeconfig_lists_and_watches_without_the_client(
    server: FakeApiServer, tmp_path: Path
) -> None:
    got = await probe(server.write_kubeconfig(str(tmp_path / "kc"), token="s3cret"),
                      tmp_path / "cg")
    assert got == {"pods": ["a", "b", "c"], "client": []}
    assert server.requests[0]["fieldSelector"] == f"spec.nodeName={NODE}"
    watch = next(q for q in server.requests if q.get("watch") == "true")
    assert watch["allowWatchBookmarks"] == "true" and watch["resourceVersion"]
    assert set(server.authorizations) == {"Bearer s3cret"}


async def test_exec_plugin_falls_back_to_the_client_library(
    server: FakeApiServer, tmp_path: Path
) -> None:
    cred = {"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
            "status": {"token": "from-plugin"}}
    kc = tmp_path / "kc"
    kc.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": server.url}}],
        "users": [{"name": "u", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1", "command": sys.executable,
            "args": ["-c", f"print({json.dumps(json.dumps(cred))})"],
            "interactiveMode": "Never"}}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "u"}}],
    }))
    got = await probe(str(kc), tmp_path / "cg")
    assert got == {"pods": ["a", "b", "c"], "client": ["kubernetes_asyncio"]}
    assert set(server.authorizations) == {"Bearer from-plugin"}


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate it signs."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=kpod-test-ca",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, ext in (("server", ["-extfile", "san.ext"]), ("client", [])):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=kpod-{name}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "1", "-out", f"{name}.pem", *ext, cwd=d)


async def test_tls_with_ca_and_client_certificate_data(
    server: FakeApiServer, tmp_path: Path
) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl (Debian package openssl) is needed to make test certificates")
    make_pki(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tmp_path / "ca.pem"))
    ctx.load_cert_chain(str(tmp_path / "server.pem"), str(tmp_path / "server.key"))
    ctx.verify_mode = ssl.CERT_REQUIRED  # no client certificate, no TLS session
    runner = web.AppRunner(server.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def b64(name: str) -> str:
        import base64
        return base64.b64encode((tmp_path / name).read_bytes()).decode()

    kc = tmp_path / "kc"
    kc.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": f"https://127.0.0.1:{port}",
                                               "certificate-authority-data": b64("ca.pem")}}],
        "users": [{"name": "u", "user": {"client-certificate-data": b64("client.pem"),
                                         "client-key-data": b64("client.key")}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "u"}}],
    }))
    try:
        got = await probe(str(kc), tmp_path / "cg")
        assert got == {"pods": ["a", "b", "c"], "client": []}
        assert set(server.authorizations) == {""}  # the certificate is the credential
        # and a server certificate the CA did not sign is refused
        s = Settings(node_name=NODE, kubeconfig=str(kc), cgroup_root=str(tmp_path / "cg"))
        kc_other = json.loads(kc.read_text())
        kc_other["clusters"][0]["cluster"]["certificate-authority-data"] = b64("client.pem")
        kc.write_text(json.dumps(kc_other))
        att = await kubernetes.start_kubernetes(s, None, startup_timeout=1.0,
                                                backoff_base=0.05, backoff_max=0.1)
        try:
            await asyncio.sleep(0.5)
            assert not att.ready
            assert "certificate" in att.watcher.stats.last_error.lower() \
                or "ssl" in att.watcher.stats.last_error.lower()
        finally:
            await att.close()
    finally:
        await runner.cleanup()

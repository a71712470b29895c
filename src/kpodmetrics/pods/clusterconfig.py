"""Where the Kubernetes API is and how to authenticate, without the Kubernetes client.

Why not kubernetes-asyncio's loader: importing any part of that package imports its
generated client, every API model class included (~65 MB of RSS measured on this
machine, docs/performance.md), and the agent needs two GETs on `/api/v1/pods`. The
mode decision (`cluster_configured`) looks only at the environment and files; the
credentials of an in-cluster service account and of a kubeconfig with static
credentials (token, token file, client certificate, basic auth) are read here.
Kubeconfigs whose user needs a plugin (`exec`, `auth-provider`) return None from
`load_access`: only then does the caller fall back to the client library.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SERVICE_ACCOUNT_TOKEN = SERVICE_ACCOUNT_DIR + "/token"
SERVICE_ACCOUNT_CA = SERVICE_ACCOUNT_DIR + "/ca.crt"
DEFAULT_KUBECONFIG = "~/.kube/config"


class ConfigError(ValueError):
    """The cluster configuration is unusable; the message says what and where."""


@dataclass(frozen=True, slots=True)
class ApiAccess:
    """Everything needed to call the API server."""

    server: str
    """Base URL, e.g. `https://10.0.0.1:443`."""
    ca_file: str = ""
    ca_data: bytes = b""
    """PEM bundle that signs the server certificate (empty: the system's)."""
    verify: bool = True
    tls_server_name: str = ""
    cert_file: str = ""
    key_file: str = ""
    cert_data: bytes = b""
    key_data: bytes = b""
    token: str = ""
    token_file: str = ""
    """Re-read periodically: service account tokens are rotated by the kubelet."""
    username: str = ""
    password: str = ""
    source: str = ""
    """Where this came from, for messages."""


def in_cluster(environ: Mapping[str, str]) -> bool:
    return bool(environ.get("KUBERNETES_SERVICE_HOST")) and bool(
        environ.get("KUBERNETES_SERVICE_PORT")
    ) and os.path.isfile(SERVICE_ACCOUNT_TOKEN)


def kubeconfig_paths(kubeconfig: str, environ: Mapping[str, str]) -> list[str]:
    """`--kubeconfig`, else `KUBECONFIG` (a path list), else ~/.kube/config."""
    raw = kubeconfig or environ.get("KUBECONFIG", "") or DEFAULT_KUBECONFIG
    return [os.path.expanduser(p) for p in raw.split(os.pathsep) if p]


def cluster_configured(kubeconfig: str, environ: Mapping[str, str]) -> bool:
    """True when a cluster is configured: in-cluster service account, or a kubeconfig
    file. Used by mode=auto; imports nothing."""
    return in_cluster(environ) or any(
        os.path.isfile(p) for p in kubeconfig_paths(kubeconfig, environ))


def in_cluster_access(environ: Mapping[str, str]) -> ApiAccess:
    host = environ.get("KUBERNETES_SERVICE_HOST", "")
    port = environ.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise ConfigError("KUBERNETES_SERVICE_HOST/PORT are not set")
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    for path in (SERVICE_ACCOUNT_TOKEN, SERVICE_ACCOUNT_CA):
        if not os.path.isfile(path):
            raise ConfigError(f"{path} does not exist (is a service account mounted?)")
    return ApiAccess(f"https://{host}:{port}", ca_file=SERVICE_ACCOUNT_CA,
                     token_file=SERVICE_ACCOUNT_TOKEN, source="in-cluster service account")


def _load_yaml(path: str) -> Any:
    import yaml  # small, and only in Kubernetes mode

    with open(path, "rb") as fh:
        try:
            return yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path!r} is not YAML: {exc}") from exc


def _named(doc: Mapping[str, Any], key: str, path: str) -> dict[str, dict[str, Any]]:
    items = doc.get(key) or []
    if not isinstance(items, list):
        raise ConfigError(f"{path!r}: {key} is not a list")
    out: dict[str, dict[str, Any]] = {}
    inner = key[:-1]  # clusters -> cluster
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise ConfigError(f"{path!r}: an entry of {key} has no name")
        body = item.get(inner) or {}
        if not isinstance(body, Mapping):
            raise ConfigError(f"{path!r}: {key}[{item['name']}] is not an object")
        out[item["name"]] = {**body, "_dir": os.path.dirname(os.path.abspath(path))}
    return out


def _merged(paths: list[str]) -> tuple[str, dict[str, dict[str, dict[str, Any]]]]:
    """Files merged as kubectl does: the first file to name an entry wins."""
    current = ""
    merged: dict[str, dict[str, dict[str, Any]]] = {"clusters": {}, "users": {},
                                                     "contexts": {}}
    for path in paths:
        if not os.path.isfile(path):
            continue
        doc = _load_yaml(path) or {}
        if not isinstance(doc, Mapping):
            raise ConfigError(f"{path!r} is not a kubeconfig object")
        if not current and isinstance(doc.get("current-context"), str):
            current = doc["current-context"]
        for key, table in merged.items():
            for name, body in _named(doc, key, path).items():
                table.setdefault(name, body)
    return current, merged


def _file(entry: Mapping[str, Any], key: str) -> str:
    value = entry.get(key) or ""
    if not isinstance(value, str):
        raise ConfigError(f"{key} is not a string")
    if value and not os.path.isabs(value):
        value = os.path.join(entry["_dir"], value)  # relative to the kubeconfig file
    return value


def _data(entry: Mapping[str, Any], key: str) -> bytes:
    value = entry.get(key) or ""
    if not isinstance(value, str):
        raise ConfigError(f"{key} is not a string")
    try:
        return base64.b64decode(value, validate=True) if value else b""
    except ValueError as exc:
        raise ConfigError(f"{key} is not base64: {exc}") from exc


def kubeconfig_access(paths: list[str]) -> ApiAccess | None:
    """The current context's cluster and user; None when the user needs a plugin."""
    current, merged = _merged(paths)
    where = ", ".join(repr(p) for p in paths)
    if not current:
        raise ConfigError(f"{where}: no current-context")
    context = merged["contexts"].get(current)
    if context is None:
        raise ConfigError(f"{where}: context {current!r} is not defined")
    cluster = merged["clusters"].get(str(context.get("cluster", "")))
    if cluster is None:
        raise ConfigError(f"{where}: cluster {context.get('cluster')!r} is not defined")
    user_name = context.get("user")
    user = merged["users"].get(str(user_name), {}) if user_name else {}
    if user_name and str(user_name) not in merged["users"]:
        raise ConfigError(f"{where}: user {user_name!r} is not defined")
    if user.get("exec") or user.get("auth-provider"):
        return None
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        raise ConfigError(f"{where}: cluster server {server!r} is not an http(s) URL")
    token = user.get("token") or ""
    if not isinstance(token, str):
        raise ConfigError(f"{where}: user token is not a string")
    return ApiAccess(
        server.rstrip("/"),
        ca_file=_file(cluster, "certificate-authority"),
        ca_data=_data(cluster, "certificate-authority-data"),
        verify=not cluster.get("insecure-skip-tls-verify", False),
        tls_server_name=str(cluster.get("tls-server-name") or ""),
        cert_file=_file(user, "client-certificate"),
        key_file=_file(user, "client-key"),
        cert_data=_data(user, "client-certificate-data"),
        key_data=_data(user, "client-key-data"),
        token=token,
        token_file=_file(user, "tokenFile"),
        username=str(user.get("username") or ""),
        password=str(user.get("password") or ""),
        source=f"kubeconfig {where} (context {current!r})",
    )

"""Kubernetes mode start-up: client configuration, pod watcher and resolver together.

The service calls `start_kubernetes(settings, cgroup_root)` once and gets back the
resolver it collects with, a readiness flag for /readyz and `close()` for shutdown.
Everything that can be wrong before the agent is useful (no node name, an unreadable
kubeconfig, RBAC that forbids listing or watching pods, no cgroup v2 root) fails here
with one clear `KubernetesStartError` each; an API server that is merely unreachable
does not: the watcher keeps retrying and the agent reports not-ready meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio import config as kconfig
from kubernetes_asyncio.config.config_exception import ConfigException

from kpodmetrics.config import Settings
from kpodmetrics.pods import cgroupfs
from kpodmetrics.pods.resolver import KubernetesResolver
from kpodmetrics.pods.watcher import PodWatcher

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
DEFAULT_KUBECONFIG = "~/.kube/config"


class KubernetesStartError(RuntimeError):
    """Kubernetes mode cannot start; the message names the cause and the remedy."""


def _in_cluster(environ: Mapping[str, str]) -> bool:
    return bool(environ.get("KUBERNETES_SERVICE_HOST")) and bool(
        environ.get("KUBERNETES_SERVICE_PORT")
    ) and os.path.isfile(SERVICE_ACCOUNT_TOKEN)


def _kubeconfig_path(settings: Settings) -> str:
    return os.path.expanduser(settings.kubeconfig or DEFAULT_KUBECONFIG)


def cluster_configured(settings: Settings, environ: Mapping[str, str] | None = None) -> bool:
    """True when a cluster is configured: in-cluster service account, or a kubeconfig
    file (`--kubeconfig` / `KUBECONFIG`, else `~/.kube/config`). Used by mode=auto."""
    env = os.environ if environ is None else environ
    if _in_cluster(env):
        return True
    return any(os.path.isfile(p) for p in _kubeconfig_path(settings).split(os.pathsep) if p)


async def load_client_configuration(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> client.Configuration:
    """An explicit kubeconfig wins, then the in-cluster service account, then ~/.kube/config."""
    env = os.environ if environ is None else environ
    cfg = client.Configuration()
    if not settings.kubeconfig and _in_cluster(env):
        try:
            kconfig.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        except ConfigException as exc:
            raise KubernetesStartError(f"in-cluster service account config: {exc}") from exc
        return cfg
    path = _kubeconfig_path(settings)
    first = path.split(os.pathsep)[0]
    try:
        with open(first, "rb"):
            pass
    except OSError as exc:
        raise KubernetesStartError(
            f"KUBECONFIG/--kubeconfig: cannot read {first!r}: {exc.strerror or exc}; "
            "point it at a readable kubeconfig or run in a cluster with a service account"
        ) from exc
    try:
        await kconfig.load_kube_config(config_file=path, client_configuration=cfg)
    except (ConfigException, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise KubernetesStartError(
            f"KUBECONFIG/--kubeconfig: {first!r} is not a usable kubeconfig: {exc}"
        ) from exc
    return cfg


class KubernetesAttribution:
    """What the service holds in Kubernetes mode."""

    def __init__(
        self,
        resolver: KubernetesResolver,
        watcher: PodWatcher,
        api: client.ApiClient,
        task: asyncio.Task[None],
    ) -> None:
        self.resolver = resolver
        self.watcher = watcher
        self._api = api
        self._task = task

    @property
    def ready(self) -> bool:
        """True once the first pod list succeeded (and stays so while the API is away)."""
        return self.watcher.ready

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        await self._api.close()


async def start_kubernetes(
    settings: Settings,
    cgroup_root: str | None = None,
    *,
    startup_timeout: float = 10.0,
    environ: Mapping[str, str] | None = None,
    **tuning: Any,
) -> KubernetesAttribution:
    """Start the pod watcher and resolver; raise KubernetesStartError when Kubernetes
    mode cannot work here. Waits up to `startup_timeout` for the first watch to open
    (so an RBAC refusal is reported at start-up), never for an unreachable server.
    `tuning` goes to PodWatcher (back-off, timeouts; tests shorten them)."""
    if not settings.node_name:
        raise KubernetesStartError(
            "NODE_NAME/--node-name is required in Kubernetes mode: set it from the downward "
            "API (env NODE_NAME valueFrom fieldRef spec.nodeName)"
        )
    try:
        root = cgroup_root or cgroupfs.detect_root(settings.cgroup_root or None)
    except cgroupfs.CgroupRootNotFound as exc:
        raise KubernetesStartError(str(exc)) from exc
    if not os.path.isdir(root):
        raise KubernetesStartError(f"cgroup root {root!r} does not exist (KPOD_CGROUP_ROOT)")
    cfg = await load_client_configuration(settings, environ)
    label_keys = tuple(getattr(settings, "pod_labels", ()))
    resolver = KubernetesResolver(
        root,
        label_keys=label_keys,
        namespaces=tuple(getattr(settings, "namespaces", ())),
        exclude_namespaces=tuple(getattr(settings, "exclude_namespaces", ())),
        grace_seconds=settings.grace_period,
        grace_max_entries=settings.grace_max_entries,
    )
    api = client.ApiClient(cfg)
    watcher = PodWatcher(api, settings.node_name, resolver, label_keys=label_keys, **tuning)
    task = asyncio.create_task(watcher.run(), name="kpod-pod-watch")
    attribution = KubernetesAttribution(resolver, watcher, api, task)
    try:
        await asyncio.wait_for(watcher.settled.wait(), startup_timeout)
    except TimeoutError:
        log.warning(
            "Kubernetes API not answering yet (%s); serving without pods and retrying",
            watcher.stats.last_error or "no answer",
        )
    if watcher.access_error is not None:
        await attribution.close()
        raise KubernetesStartError(str(watcher.access_error))
    return attribution

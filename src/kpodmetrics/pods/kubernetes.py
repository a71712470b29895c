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

from kpodmetrics.config import Settings
from kpodmetrics.pods import cgroupfs, clusterconfig
from kpodmetrics.pods.apiclient import PodsTransport, RawTransport
from kpodmetrics.pods.clusterconfig import SERVICE_ACCOUNT_TOKEN, ConfigError
from kpodmetrics.pods.resolver import KubernetesResolver
from kpodmetrics.pods.watcher import PodWatcher

log = logging.getLogger(__name__)

__all__ = ["SERVICE_ACCOUNT_TOKEN", "KubernetesStartError", "cluster_configured",
           "start_kubernetes"]


class KubernetesStartError(RuntimeError):
    """Kubernetes mode cannot start; the message names the cause and the remedy."""


def cluster_configured(settings: Settings, environ: Mapping[str, str] | None = None) -> bool:
    """True when a cluster is configured: in-cluster service account, or a kubeconfig
    file (`--kubeconfig` / `KUBECONFIG`, else `~/.kube/config`). Used by mode=auto."""
    return clusterconfig.cluster_configured(
        settings.kubeconfig, os.environ if environ is None else environ)


async def open_transport(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> PodsTransport:
    """An explicit kubeconfig wins, then the in-cluster service account, then
    `KUBECONFIG` / ~/.kube/config. Static credentials go through our own client; a
    user that needs a credential plugin through kubernetes-asyncio (clientfallback)."""
    env = os.environ if environ is None else environ
    if not settings.kubeconfig and clusterconfig.in_cluster(env):
        try:
            return RawTransport(clusterconfig.in_cluster_access(env))
        except ConfigError as exc:
            raise KubernetesStartError(f"in-cluster service account config: {exc}") from exc
    paths = clusterconfig.kubeconfig_paths(settings.kubeconfig, env)
    first = paths[0] if paths else clusterconfig.DEFAULT_KUBECONFIG
    try:
        with open(first, "rb"):
            pass
    except OSError as exc:
        raise KubernetesStartError(
            f"KUBECONFIG/--kubeconfig: cannot read {first!r}: {exc.strerror or exc}; "
            "point it at a readable kubeconfig or run in a cluster with a service account"
        ) from exc
    try:
        access = clusterconfig.kubeconfig_access(paths)
        if access is not None:
            return RawTransport(access)
        from kpodmetrics.pods import clientfallback  # a credential plugin: the client's loader

        log.info("kubeconfig user needs a credential plugin: using kubernetes-asyncio")
        return await clientfallback.client_transport(paths)
    except (ConfigError, OSError) as exc:
        raise KubernetesStartError(
            f"KUBECONFIG/--kubeconfig: {first!r} is not a usable kubeconfig: {exc}"
        ) from exc


class KubernetesAttribution:
    """What the service holds in Kubernetes mode."""

    def __init__(
        self,
        resolver: KubernetesResolver,
        watcher: PodWatcher,
        api: PodsTransport,
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
    transport = await open_transport(settings, environ)
    label_keys = tuple(getattr(settings, "pod_labels", ()))
    resolver = KubernetesResolver(
        root,
        label_keys=label_keys,
        namespaces=tuple(getattr(settings, "namespaces", ())),
        exclude_namespaces=tuple(getattr(settings, "exclude_namespaces", ())),
        grace_seconds=settings.grace_period,
        grace_max_entries=settings.grace_max_entries,
    )
    watcher = PodWatcher(transport, settings.node_name, resolver, label_keys=label_keys,
                         **tuning)
    task = asyncio.create_task(watcher.run(), name="kpod-pod-watch")
    attribution = KubernetesAttribution(resolver, watcher, transport, task)
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

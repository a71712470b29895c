"""Pods through kubernetes-asyncio, for kubeconfigs whose user needs a credential
plugin (`exec`, `auth-provider`: cloud CLIs, OIDC) that `clusterconfig` does not run.

Importing the client costs its generated models (~65 MB of RSS), so this module is
imported only on that path; the in-cluster service account (the DaemonSet) and
kubeconfigs with static credentials use `apiclient.RawTransport`. The responses are
still raw (`_preload_content=False`): no model object is ever built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio import config as kconfig
from kubernetes_asyncio.config.config_exception import ConfigException

from kpodmetrics.pods.clusterconfig import ConfigError

_PARAMS = {"fieldSelector": "field_selector", "watch": "watch",
           "allowWatchBookmarks": "allow_watch_bookmarks",
           "resourceVersion": "resource_version", "timeoutSeconds": "timeout_seconds"}


class ClientTransport:
    def __init__(self, api: client.ApiClient) -> None:
        self._api = api
        self._core = client.CoreV1Api(api)

    async def get_pods(
        self, params: Mapping[str, str], timeout: aiohttp.ClientTimeout
    ) -> aiohttp.ClientResponse:
        kwargs: dict[str, Any] = {}
        for key, value in params.items():
            name = _PARAMS[key]
            kwargs[name] = value == "true" if name in ("watch", "allow_watch_bookmarks") \
                else int(value) if name == "timeout_seconds" else value
        resp: Any = await self._core.list_pod_for_all_namespaces(
            _preload_content=False, _request_timeout=timeout, **kwargs)
        return cast(aiohttp.ClientResponse, resp)

    async def close(self) -> None:
        await self._api.close()


async def client_transport(paths: list[str]) -> ClientTransport:
    cfg = client.Configuration()
    try:
        await kconfig.load_kube_config(config_file=":".join(paths), client_configuration=cfg)
    except (ConfigException, ValueError, TypeError, KeyError, AttributeError, OSError) as exc:
        raise ConfigError(str(exc)) from exc
    return ClientTransport(client.ApiClient(cfg))

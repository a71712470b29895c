"""The few facts about a pod the resolver needs, read defensively from API JSON.

Pods are kept as small frozen records rather than the client's generated models:
a node's pods are re-read on every event, and objects from the API server are
untrusted input (a malformed one is skipped and counted, never a crash).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kpodmetrics.pods.cgroup_paths import parse_container_id

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
"""Static pods: the API's mirror pod has its own UID; this annotation holds the hash
the kubelet uses as the pod UID in cgroup names."""

_STATUS_LISTS = ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses")
_LABEL_NAME = re.compile(r"[^a-zA-Z0-9_]")


class MalformedPod(ValueError):
    """An API object that is not a usable pod; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class PodInfo:
    uid: str
    namespace: str
    name: str
    containers: Mapping[str, str]
    """container id (no runtime scheme) -> container name, over all status lists."""
    labels: tuple[str, ...] = ()
    """Values of the allow-listed pod labels, in allow-list order ("" when absent)."""
    cgroup_uid: str = ""
    """The UID in cgroup names when it differs from `uid` (static pods)."""
    resource_version: str = ""


def label_name(key: str) -> str:
    """Pod label key -> Prometheus label name.

    `app.kubernetes.io/name` -> `label_app_kubernetes_io_name`."""
    return "label_" + _LABEL_NAME.sub("_", key)


def _str(obj: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = obj.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise MalformedPod(f"{where}.{key} is {value!r}, expected a non-empty string")
    return value


def _map(obj: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MalformedPod(f"{where}.{key} is a {type(value).__name__}, expected an object")
    return value


def parse_pod(obj: Any, label_keys: Sequence[str] = ()) -> PodInfo:
    """A PodInfo from a pod object as the API serves it; MalformedPod if unusable.

    Container statuses without an id yet (ContainerCreating) are skipped: the pod's
    next MODIFIED event carries them."""
    if not isinstance(obj, Mapping):
        raise MalformedPod(f"object is a {type(obj).__name__}, expected a pod")
    meta = _map(obj, "metadata", "pod")
    uid = _str(meta, "uid", "metadata").lower()
    namespace = _str(meta, "namespace", "metadata")
    name = _str(meta, "name", "metadata")
    rv = _str(meta, "resourceVersion", "metadata", required=False)
    labels = _map(meta, "labels", "metadata")
    annotations = _map(meta, "annotations", "metadata")
    mirror = annotations.get(MIRROR_ANNOTATION)
    cgroup_uid = mirror.lower() if isinstance(mirror, str) and mirror else ""
    status = _map(obj, "status", "pod")
    containers: dict[str, str] = {}
    for key in _STATUS_LISTS:
        items = status.get(key)
        if items is None:
            continue
        if not isinstance(items, list):
            raise MalformedPod(f"status.{key} is a {type(items).__name__}, expected a list")
        for item in items:
            if not isinstance(item, Mapping):
                raise MalformedPod(f"status.{key}[] is a {type(item).__name__}, expected an object")
            cname = _str(item, "name", f"status.{key}[]")
            # the previous instance of a restarted container may still have data in flight
            last = _map(_map(item, "lastState", f"status.{key}[]"), "terminated", "lastState")
            for raw_id in (last.get("containerID"), item.get("containerID")):
                if raw_id is None or raw_id == "":
                    continue
                if not isinstance(raw_id, str):
                    raise MalformedPod(f"status.{key}[].containerID is {raw_id!r}")
                cid = parse_container_id(raw_id)
                if cid:
                    containers[cid] = cname
    values = tuple(v if isinstance(v := labels.get(k), str) else "" for k in label_keys)
    return PodInfo(uid, namespace, name, containers, values, cgroup_uid, rv)

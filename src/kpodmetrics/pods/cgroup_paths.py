"""Parse a pod UID and a container ID out of a cgroup v2 path written by the kubelet.

Why parse names at all: the kernel only gives us a cgroup id (the directory inode);
the kubelet and the container runtime encode the pod UID and the container ID in the
directory names, so one walk of the tree maps every id without reading any
`/proc/<pid>/cgroup`. The layouts differ by cgroup driver and runtime:

systemd driver (`.slice` / `.scope` units, `-` separates the slice hierarchy, so the
kubelet writes the UID with `_`; systemd may also escape characters as `\\xNN`)::

    /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope
    /kubepods.slice/kubepods-pod<uid_>.slice/crio-<id>.scope           (guaranteed QoS)
    /kubelet.slice/kubelet-kubepods.slice/.../kubelet-kubepods-besteffort-pod<uid_>.slice/docker-<id>.scope

cgroupfs driver (plain directories)::

    /kubepods/burstable/pod<uid>/<id>
    /kubepods/pod<uid>/crio-<id>
    /kubelet/kubepods/besteffort/pod<uid>/<id>                          (kind)

Anything below a container directory (a container that makes its own sub-cgroups,
CRI-O's `…scope/container`) belongs to that container. Paths can carry any prefix
(hybrid hosts, a DaemonSet's `/host/sys/fs/cgroup`, test roots): the parser looks for
a pod directory below a directory whose name contains `kubepods`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")
# systemd: "<anything->pod<uid>.slice"; cgroupfs: "pod<uid>"
_POD_SYSTEMD = re.compile(r"^(?:.*-)?pod([0-9a-fA-F][0-9a-fA-F_-]*)\.slice$")
_POD_CGROUPFS = re.compile(r"^pod([0-9a-fA-F][0-9a-fA-F_-]*)$")
_UID_DASHED = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# static pods: the kubelet uses the 32-hex config hash as the cgroup's pod UID
_UID_HASH = re.compile(r"^[0-9a-f]{32}$")
_HEX_ID = r"[0-9a-fA-F]{12,128}"
_CONTAINER_PREFIXED = re.compile(
    rf"^(?P<rt>cri-containerd|crio|docker|cri-o|containerd|libpod)-(?P<id>{_HEX_ID})(?:\.scope)?$"
)
_CONTAINER_CONMON = re.compile(rf"^crio-conmon-(?P<id>{_HEX_ID})(?:\.scope)?$")
_CONTAINER_BARE = re.compile(rf"^(?P<id>{_HEX_ID})$")

_RUNTIME_NAMES = {
    "cri-containerd": "containerd",
    "containerd": "containerd",
    "crio": "cri-o",
    "cri-o": "cri-o",
    "docker": "docker",
    "libpod": "podman",
}


@dataclass(frozen=True, slots=True)
class PodCgroup:
    """What a cgroup path says about its owner.

    `container_id` is empty for the pod's own directory (and for CRI-O's conmon
    scope, which is pod overhead rather than a container)."""

    pod_uid: str
    container_id: str = ""
    runtime: str = ""
    pod_level: bool = False
    """True only for the pod directory itself (what file collectors read per pod)."""
    nested: bool = False
    """True below the pod or container directory (sub-cgroups, unknown children): such
    a directory's files are already counted in its parent's, so it is never a target."""


def unescape(segment: str) -> str:
    """Undo systemd's `\\xNN` escaping of a unit-name segment."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), segment)


def normalize_uid(raw: str) -> str | None:
    """A pod UID as the API server writes it, or None if `raw` is not a UID.

    The systemd driver replaces `-` with `_` (a `-` would open a new slice level)."""
    uid = raw.replace("_", "-").lower()
    if _UID_DASHED.match(uid) or _UID_HASH.match(uid):
        return uid
    return None


def _pod_uid(segment: str) -> str | None:
    m = _POD_SYSTEMD.match(segment) or _POD_CGROUPFS.match(segment)
    return normalize_uid(m.group(1)) if m else None


def _container(segment: str) -> tuple[str, str] | None:
    """(container id, runtime) for a container directory name, else None."""
    if _CONTAINER_CONMON.match(segment):
        return "", "cri-o"
    m = _CONTAINER_PREFIXED.match(segment)
    if m:
        return m.group("id").lower(), _RUNTIME_NAMES[m.group("rt")]
    m = _CONTAINER_BARE.match(segment)
    if m:
        return m.group("id").lower(), ""
    return None


def parse(path: str) -> PodCgroup | None:
    """The pod (and container) a cgroup path belongs to, or None for non-pod cgroups."""
    segments = [unescape(s) for s in path.split("/") if s]
    seen_kubepods = False
    for i, seg in enumerate(segments):
        if not seen_kubepods:
            seen_kubepods = "kubepods" in seg
            continue
        uid = _pod_uid(seg)
        if uid is None:
            continue
        rest = segments[i + 1 :]
        if not rest:
            return PodCgroup(uid, pod_level=True)
        found = _container(rest[0])
        if found is None:
            # an unknown child of the pod directory: still the pod's, not a container
            return PodCgroup(uid, nested=True)
        cid, runtime = found
        return PodCgroup(uid, cid, runtime, nested=len(rest) > 1 or not cid)
    return None


def parse_container_id(status_id: str) -> str:
    """`containerd://<id>`, `cri-o://<id>`, `docker://<id>` -> `<id>` (lower case)."""
    _, sep, rest = status_id.partition("://")
    return (rest if sep else status_id).strip().lower()

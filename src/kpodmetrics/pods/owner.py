"""The owner of a cgroup and the resolver protocol the rest of the agent relies on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from kpodmetrics.samples import Labels


@dataclass(frozen=True, slots=True)
class Owner:
    """Whom a series belongs to.

    `key` is the stable identity used to drop every series of the owner at once
    (a pod UID plus container name, or a cgroup path); `labels` are the owner labels
    in export order, e.g. `(("namespace", "ns"), ("pod", "p"), ("container", "c"))` or
    `(("cgroup", "/system.slice/x.service"),)`.
    """

    key: str
    labels: Labels


@dataclass(frozen=True, slots=True)
class CgroupRef:
    """A cgroup v2 directory the file collectors should read this cycle."""

    cgroup_id: int
    path: str
    """Absolute path of the directory (below the configured cgroup root)."""
    owner: Owner
    pod_key: str = ""
    """Groups the cgroups of one pod (network namespace is per pod); the cgroup path
    itself in standalone mode."""
    pod_level: bool = False
    """True for the pod's own directory (container="" in Kubernetes mode)."""


class Resolver(Protocol):
    """Maps cgroup ids seen in kernel data to owners.

    `refresh` does blocking filesystem work and is called off the event loop once per
    cycle before collection; the other methods are cheap lookups.
    """

    owner_label_names: tuple[str, ...]

    def refresh(self) -> None: ...

    def resolve(self, cgroup_id: int) -> Owner | None: ...

    def ignored(self, cgroup_id: int) -> bool:
        """True for known cgroups that are deliberately not exported (not a pod, or a
        filtered-out namespace): their samples go to no series, not even the unresolved one."""
        ...

    def targets(self) -> Sequence[CgroupRef]: ...

    def drain_removed(self) -> list[Owner]:
        """Owners whose grace period ended since the last call: drop their series."""
        ...

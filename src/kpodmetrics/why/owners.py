"""Who a series belongs to: a pod (Kubernetes mode) or a cgroup path (standalone).

The agent labels every per-owner series with namespace/pod/container, or with
`cgroup` (the path below the cgroup v2 root). The holder family names the other side
with the same labels prefixed `holder_`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kpodmetrics.why.scrape import LabelSet, Scrape

_V2_MOUNTS = ("/sys/fs/cgroup/unified", "/sys/fs/cgroup")


@dataclass(frozen=True, slots=True)
class Owner:
    """A pod (`namespace`, `pod`) or a cgroup subtree (`cgroup`)."""

    namespace: str = ""
    pod: str = ""
    cgroup: str = ""

    @property
    def kubernetes(self) -> bool:
        return bool(self.pod)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.pod}" if self.pod else self.cgroup

    def matches(self, labels: LabelSet, prefix: str = "") -> bool:
        d = dict(labels)
        if self.pod:
            return d.get(prefix + "namespace") == self.namespace and d.get(prefix + "pod") == self.pod
        cg = d.get(prefix + "cgroup")
        if cg is None:
            return False
        return cg == self.cgroup or self.cgroup == "/" or cg.startswith(self.cgroup + "/")


def parse_pod(text: str) -> Owner:
    """`namespace/pod` -> Owner; ValueError with the expected form otherwise."""
    ns, sep, pod = text.partition("/")
    if not sep or not ns or not pod or "/" in pod:
        raise ValueError(f"expected <namespace>/<pod>, got {text!r}")
    return Owner(namespace=ns, pod=pod)


def parse_cgroup(text: str) -> Owner:
    """A cgroup path below the v2 root (a full /sys/fs/cgroup/... path is accepted)."""
    path = text.strip()
    for mount in _V2_MOUNTS:
        if path == mount or path.startswith(mount + "/"):
            path = path[len(mount):]
            break
    path = "/" + path.strip("/")
    return Owner(cgroup=path)


def owner_of(labels: LabelSet, prefix: str = "") -> Owner | None:
    """The owner a label set names (pod, else cgroup), None for node-wide series."""
    d = dict(labels)
    if d.get(prefix + "pod"):
        return Owner(namespace=d.get(prefix + "namespace", ""), pod=d[prefix + "pod"])
    if d.get(prefix + "cgroup"):
        return Owner(cgroup=d[prefix + "cgroup"])
    return None


def known_owners(scrapes: Iterable[Scrape]) -> set[Owner]:
    """Every owner with at least one series in any of the scrapes."""
    out: set[Owner] = set()
    for s in scrapes:
        for series in s.samples.values():
            for labels in series:
                o = owner_of(labels)
                if o is not None:
                    out.add(o)
    return out

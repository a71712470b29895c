"""Kubernetes resolver: cgroup id -> (namespace, pod, container) for this node's pods.

Two inputs are joined lazily at lookup time:

- the pods the watcher reports (`upsert` / `delete` / `reconcile`, on the event loop);
- the cgroup tree (`refresh`, off the loop): every directory's inode and what its
  path says (pod UID, container ID; see `cgroup_paths`).

Joining at lookup rather than at walk time means a pod update (a container got its
ID) takes effect at once, and a walk is only needed for new directories: when a pod
appears or changes, when an unknown id shows up in kernel data (at most once per
`rewalk_interval`; misses are cached until the next walk), and every
`full_walk_interval` as a safety net.

A deleted pod moves to the grace cache; when its grace ends (or the LRU cap evicts
it) every owner issued for it is handed out by `drain_removed`, so the store drops
all its series.

A cgroup id seen in one walk stays resolvable for the grace period after a later walk
no longer finds its directory (`_vanished`), with the container name it had then:
the runtime removes a dead container's cgroup at once, but the kernel data of its
last moments (the OOM kill that ended it, its last run-queue waits, TCP closes) is
read one cycle later, usually after the pod update that triggered the re-walk. It is
still charged to the container while its pod is live or in its own grace period.

Pods of filtered-out namespaces and cgroups outside `kubepods` are *ignored*
(`ignored()`), which is not the same as *unresolved* (an id nobody knows).
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from kpodmetrics.pods import cgroupfs
from kpodmetrics.pods.cgroup_paths import PodCgroup, parse
from kpodmetrics.pods.grace import GraceCache
from kpodmetrics.pods.owner import CgroupRef, Owner
from kpodmetrics.pods.podinfo import PodInfo, label_name

log = logging.getLogger(__name__)

BASE_LABELS = ("namespace", "pod", "container")


@dataclass(slots=True)
class ResolverStats:
    """Monotonic counters for self-metrics (read without the lock: ints are atomic)."""

    walks: int = 0
    walks_on_miss: int = 0
    unresolved_lookups: int = 0
    """resolve() calls for an id that maps to no known pod (the store's unresolved bucket)."""
    ignored_lookups: int = 0
    """resolve() calls for non-pod cgroups or pods of filtered-out namespaces."""
    grace_expired: int = 0
    grace_evicted: int = 0
    owners_removed: int = 0
    vanished_lookups: int = 0
    """resolve() calls answered for a cgroup whose directory was already gone."""


@dataclass(frozen=True, slots=True)
class _Vanished:
    """A walked cgroup whose directory is gone: what it was, until when it resolves."""

    rel: str
    parsed: PodCgroup | None
    container: str | None
    """Container name at the walk that lost it (the pod's status may forget the id)."""
    until: float


@dataclass(slots=True)
class _Pod:
    info: PodInfo
    excluded: bool
    gen: int = 0
    owners: dict[str, Owner] = field(default_factory=dict)


def namespace_filter(
    include: Sequence[str], exclude: Sequence[str]
) -> Callable[[str], bool]:
    """True when a namespace is exported. Entries are names or shell globs (`kube-*`);
    an empty include list includes all; exclude wins."""

    def allowed(ns: str) -> bool:
        if include and not any(fnmatch.fnmatchcase(ns, p) for p in include):
            return False
        return not any(fnmatch.fnmatchcase(ns, p) for p in exclude)

    return allowed


class KubernetesResolver:
    def __init__(
        self,
        root: str,
        *,
        label_keys: Sequence[str] = (),
        namespaces: Sequence[str] = (),
        exclude_namespaces: Sequence[str] = (),
        grace_seconds: float = 5.0,
        grace_max_entries: int = 10_000,
        rewalk_interval: float = 1.0,
        full_walk_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = root.rstrip("/") or "/"
        self.label_keys = tuple(label_keys)
        self.owner_label_names = BASE_LABELS + tuple(label_name(k) for k in self.label_keys)
        self._allowed = namespace_filter(namespaces, exclude_namespaces)
        self.rewalk_interval = rewalk_interval
        self.full_walk_interval = full_walk_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._walk_lock = threading.Lock()
        self._pods: dict[str, _Pod] = {}
        self._cgroup_uid: dict[str, str] = {}  # cgroup-name UID -> API UID (static pods)
        self._grace: GraceCache[str, _Pod] = GraceCache(grace_seconds, grace_max_entries, clock)
        self._cgroups: dict[int, tuple[str, PodCgroup | None]] = {}
        self._vanished: dict[int, _Vanished] = {}
        self._vanish_ttl = grace_seconds
        self._vanish_max = grace_max_entries
        self._misses: set[int] = set()
        self._removed: list[Owner] = []
        self._dirty = True
        self._last_walk = float("-inf")
        self.stats = ResolverStats()

    # -- pods (event loop side) -------------------------------------------------------

    def upsert(self, info: PodInfo) -> None:
        """A pod was listed, added or modified."""
        with self._lock:
            pod = self._pods.get(info.uid) or self._grace.pop(info.uid)
            if pod is None:
                self._pods[info.uid] = _Pod(info, excluded=not self._allowed(info.namespace))
                self._dirty = True
            else:
                self._pods[info.uid] = pod
                if pod.info.labels != info.labels and pod.owners:
                    # new label values are new series: the old ones must not linger
                    self._remove_owners_locked(pod)
                    pod.gen += 1
                if pod.info.containers.keys() != info.containers.keys():
                    self._dirty = True
                pod.info = info
            if info.cgroup_uid and info.cgroup_uid != info.uid:
                self._cgroup_uid[info.cgroup_uid] = info.uid

    def delete(self, uid: str) -> None:
        """The pod is gone from the API: keep it resolvable for the grace period."""
        with self._lock:
            self._delete_locked(uid)

    def reconcile(self, pods: Iterable[PodInfo]) -> int:
        """Make the live set exactly `pods` (a fresh list); returns how many were deleted."""
        listed = {}
        for info in pods:
            listed[info.uid] = info
        with self._lock:
            gone = [uid for uid in self._pods if uid not in listed]
            for uid in gone:
                self._delete_locked(uid)
        for info in listed.values():
            self.upsert(info)
        return len(gone)

    def _delete_locked(self, uid: str) -> None:
        pod = self._pods.pop(uid, None)
        if pod is None:
            return
        self._dirty = True
        for evicted in self._grace.add(uid, pod):
            self.stats.grace_evicted += 1
            self._forget_locked(evicted)

    def _forget_locked(self, pod: _Pod) -> None:
        self._remove_owners_locked(pod)
        cg = pod.info.cgroup_uid
        if cg and self._cgroup_uid.get(cg) == pod.info.uid and pod.info.uid not in self._pods:
            del self._cgroup_uid[cg]

    def _remove_owners_locked(self, pod: _Pod) -> None:
        self._removed.extend(pod.owners.values())
        self.stats.owners_removed += len(pod.owners)
        pod.owners = {}

    def pod_uids(self) -> set[str]:
        with self._lock:
            return set(self._pods)

    # -- Resolver protocol (collection side, off the loop) -------------------------------

    def refresh(self) -> None:
        with self._lock:
            for pod in self._grace.expire():
                self.stats.grace_expired += 1
                self._forget_locked(pod)
                self._dirty = True  # its directories are gone or going: drop their ids
            if self._vanished:
                self._purge_vanished_locked()
        if self._dirty or self._clock() - self._last_walk >= self.full_walk_interval:
            self._walk()

    def _walk(self) -> None:
        with self._walk_lock:
            self._dirty = False
            found: dict[int, tuple[str, PodCgroup | None]] = {}
            for rel, cid in cgroupfs.walk(self.root):
                found[cid] = (rel, parse(rel))
            with self._lock:
                self._keep_vanished_locked(found)
                self._cgroups = found
                self._misses.clear()
                self._last_walk = self._clock()
                self.stats.walks += 1

    def _purge_vanished_locked(self) -> None:
        """Forget removed ids whose time is up or whose pod is forgotten (its owners
        are gone from the store: a late sample must not bring them back)."""
        now = self._clock()
        for cid in [c for c, v in self._vanished.items() if v.until <= now or (
                v.parsed is not None and self._pod_locked(v.parsed.pod_uid) is None)]:
            del self._vanished[cid]

    def _keep_vanished_locked(self, found: dict[int, tuple[str, PodCgroup | None]]) -> None:
        """Remember the ids of the last walk that this walk no longer finds."""
        for cid in [c for c in self._vanished if c in found]:
            del self._vanished[cid]
        self._purge_vanished_locked()
        now = self._clock()
        until = now + self._vanish_ttl
        for cid, (rel, parsed) in self._cgroups.items():
            if cid in found or cid in self._vanished:
                continue
            name = None
            if parsed is not None:
                pod = self._pod_locked(parsed.pod_uid)
                if pod is None:
                    continue  # a forgotten pod: its ids resolve to nothing any more
                if parsed.container_id:
                    name = pod.info.containers.get(parsed.container_id)
            self._vanished[cid] = _Vanished(rel, parsed, name, until)
        while len(self._vanished) > self._vanish_max:  # oldest first (insertion order)
            del self._vanished[next(iter(self._vanished))]

    def _entry_locked(
        self, cgroup_id: int
    ) -> tuple[PodCgroup | None, str | None] | None:
        """(parsed path, remembered container name) of a live or recently vanished id."""
        entry = self._cgroups.get(cgroup_id)
        if entry is not None:
            return entry[1], None
        gone = self._vanished.get(cgroup_id)
        if gone is None or gone.until <= self._clock():
            return None
        self.stats.vanished_lookups += 1
        return gone.parsed, gone.container

    def _pod_locked(self, uid: str) -> _Pod | None:
        uid = self._cgroup_uid.get(uid, uid)
        pod = self._pods.get(uid)
        return pod if pod is not None else self._grace.get(uid)

    def _owner_locked(self, pod: _Pod, container: str) -> Owner:
        owner = pod.owners.get(container)
        if owner is None:
            info = pod.info
            key = f"{info.uid}/{container}" + (f"@{pod.gen}" if pod.gen else "")
            labels = (
                ("namespace", info.namespace),
                ("pod", info.name),
                ("container", container),
                *zip(self.owner_label_names[3:], info.labels, strict=True),
            )
            owner = pod.owners[container] = Owner(key, labels)
        return owner

    def _lookup_locked(self, cgroup_id: int) -> tuple[str, Owner | None]:
        """('ok'|'ignored'|'unknown', owner)."""
        entry = self._entry_locked(cgroup_id)
        if entry is None:
            return "unknown", None
        parsed, remembered = entry
        if parsed is None:
            return "ignored", None
        pod = self._pod_locked(parsed.pod_uid)
        if pod is None:
            return "unknown", None
        if pod.excluded:
            return "ignored", None
        # pause/sandbox containers and containers without a reported ID yet: the pod's
        name = pod.info.containers.get(parsed.container_id, "") if parsed.container_id else ""
        return "ok", self._owner_locked(pod, remembered or name)

    def _classify(self, cgroup_id: int) -> tuple[str, Owner | None]:
        with self._lock:
            state, owner = self._lookup_locked(cgroup_id)
            if state != "unknown" or cgroup_id in self._misses:
                return state, owner
            stale = self._clock() - self._last_walk >= self.rewalk_interval
        if stale:
            self.stats.walks_on_miss += 1
            self._walk()
        with self._lock:
            state, owner = self._lookup_locked(cgroup_id)
            if state == "unknown":
                self._misses.add(cgroup_id)
            return state, owner

    def resolve(self, cgroup_id: int) -> Owner | None:
        state, owner = self._classify(cgroup_id)
        if state == "unknown":
            self.stats.unresolved_lookups += 1
        elif state == "ignored":
            self.stats.ignored_lookups += 1
        return owner

    def ignored(self, cgroup_id: int) -> bool:
        """True for cgroups that are deliberately not exported (not a pod, or a pod of a
        filtered-out namespace): their kernel data belongs in no bucket."""
        return self._classify(cgroup_id)[0] == "ignored"

    @property
    def unresolved_total(self) -> int:
        return self.stats.unresolved_lookups

    def targets(self) -> Sequence[CgroupRef]:
        out: list[CgroupRef] = []
        with self._lock:
            for cid, (rel, parsed) in self._cgroups.items():
                if parsed is None or parsed.nested:
                    continue
                uid = self._cgroup_uid.get(parsed.pod_uid, parsed.pod_uid)
                pod = self._pods.get(uid)
                if pod is None or pod.excluded:
                    continue
                if parsed.pod_level:
                    owner = self._owner_locked(pod, "")
                else:
                    name = pod.info.containers.get(parsed.container_id)
                    if name is None:
                        continue  # the sandbox: its usage is already in the pod directory
                    owner = self._owner_locked(pod, name)
                path = self.root + rel if rel != "/" else self.root
                out.append(CgroupRef(cid, path, owner, pod_key=uid, pod_level=parsed.pod_level))
        return out

    def drain_removed(self) -> list[Owner]:
        with self._lock:
            out, self._removed = self._removed, []
        return out

    # -- introspection (tests, churn measurement) ---------------------------------------

    def sizes(self) -> dict[str, int]:
        with self._lock:
            return {
                "pods": len(self._pods),
                "grace": len(self._grace),
                "cgroup_uids": len(self._cgroup_uid),
                "cgroups": len(self._cgroups),
                "vanished": len(self._vanished),
                "misses": len(self._misses),
                "removed_pending": len(self._removed),
                "owners": sum(len(p.owners) for p in self._pods.values()),
            }

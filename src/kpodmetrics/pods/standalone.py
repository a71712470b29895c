"""Standalone resolver: no Kubernetes, series labelled by cgroup path.

Every cgroup of the v2 tree is an owner (`cgroup="/path"`). The tree is walked at
most once per `rewalk_interval` and again when kernel data names an id we do not know
(rate-limited). A cgroup that disappears stays resolvable for the grace period, then
its series leave the export.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from kpodmetrics.pods import cgroupfs
from kpodmetrics.pods.owner import CgroupRef, Owner


class StandaloneResolver:
    owner_label_names: tuple[str, ...] = ("cgroup",)

    def __init__(
        self,
        root: str,
        *,
        grace_seconds: float = 5.0,
        rewalk_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = root
        self.grace = grace_seconds
        self.rewalk_interval = rewalk_interval
        self._clock = clock
        self._live: dict[int, CgroupRef] = {}
        self._gone: dict[int, tuple[CgroupRef, float]] = {}
        self._removed: list[Owner] = []
        self._last_walk = float("-inf")
        self._misses: set[int] = set()
        self._lock = threading.Lock()
        self.walks = 0

    def refresh(self) -> None:
        self._walk()
        self._expire()

    def _walk(self) -> None:
        found: dict[int, CgroupRef] = {}
        known = self._live
        for rel, cid in cgroupfs.walk(self.root):
            ref = known.get(cid)
            if ref is None or ref.pod_key != rel:  # new (or renamed): a cycle reuses the rest
                path = self.root if rel == "/" else self.root + rel
                owner = Owner(key=rel, labels=(("cgroup", rel),))
                ref = CgroupRef(cid, path, owner, pod_key=rel, pod_level=True)
            found[cid] = ref
        now = self._clock()
        with self._lock:
            for cid, ref in self._live.items():
                if cid not in found:
                    self._gone[cid] = (ref, now)
            for cid in found:
                self._gone.pop(cid, None)
            self._live = found
            self._misses.clear()
            self._last_walk = now
            self.walks += 1

    def _expire(self) -> None:
        now = self._clock()
        with self._lock:
            for cid, (ref, since) in list(self._gone.items()):
                if now - since >= self.grace:
                    del self._gone[cid]
                    live_keys = {r.owner.key for r in self._live.values()}
                    if ref.owner.key not in live_keys:
                        self._removed.append(ref.owner)

    def resolve(self, cgroup_id: int) -> Owner | None:
        ref = self._live.get(cgroup_id)
        if ref is None:
            gone = self._gone.get(cgroup_id)
            if gone is not None:
                return gone[0].owner
            if cgroup_id in self._misses:
                return None
            if self._clock() - self._last_walk >= self.rewalk_interval:
                self._walk()
                ref = self._live.get(cgroup_id)
            if ref is None:
                self._misses.add(cgroup_id)
                return None
        return ref.owner

    def ignored(self, cgroup_id: int) -> bool:
        return False  # standalone exports every cgroup

    def targets(self) -> Sequence[CgroupRef]:
        with self._lock:
            return list(self._live.values())

    def drain_removed(self) -> list[Owner]:
        with self._lock:
            out, self._removed = self._removed, []
        return out

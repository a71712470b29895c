"""Which cgroups each kind of signal is read from, so nothing is counted twice.

cgroup v2 files are hierarchical: a pod directory's io.stat, memory.current and
cpu.stat already include its containers, live and dead. Per-cgroup signals read the
pod directory and every listed container, pod by pod (`pod_groups`); the pod-level
series carry only what no container accounts for (`podlevel.PodLedger`).
Standalone, every cgroup is its own pod and is read as such (nested cgroups each show
their subtree).

Per-pod signals (network namespace, volumes) are read once per `pod_key` and
attributed to the pod-level cgroup (or, without one, the pod's shallowest cgroup).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from kpodmetrics.collectors.files.support.files import CGROUP_RECORD_MAX, read_bounded
from kpodmetrics.collectors.files.support.formats import lines_of
from kpodmetrics.pods.cgroupfs import LEAF_NLINK
from kpodmetrics.pods.owner import CgroupRef

MAX_PIDS_TRIED = 3


def _group_key(ref: CgroupRef) -> str:
    return ref.pod_key or ref.path


@dataclass(frozen=True, slots=True)
class PodGroup:
    """The cgroups of one pod: `anchor` receives the per-pod series."""

    key: str
    anchor: CgroupRef
    members: tuple[CgroupRef, ...]
    """anchor first, then the other cgroups by path."""


def pod_groups(targets: Sequence[CgroupRef]) -> list[PodGroup]:
    """Targets grouped by pod, ordered by anchor path (ancestors before descendants)."""
    groups: dict[str, list[CgroupRef]] = {}
    for ref in targets:
        groups.setdefault(_group_key(ref), []).append(ref)
    out: list[PodGroup] = []
    for key, refs in groups.items():
        refs.sort(key=lambda r: (not r.pod_level, len(r.path), r.path))
        out.append(PodGroup(key, refs[0], tuple(refs)))
    out.sort(key=lambda g: g.anchor.path)
    return out


def pod_groups_memo(targets: Sequence[CgroupRef],
                    memo: dict[tuple[str, str], Any]) -> list[PodGroup]:
    """`pod_groups` of the cycle's targets, grouped once per cycle for the six
    collectors that walk pod by pod (the grouping and its sorts were 3 % of a cycle at
    1,000 cgroups). The list is shared: callers only read it."""
    return cast(list[PodGroup], _once(memo, ("pod_groups", ""), lambda: pod_groups(targets)))


def read_procs(cgroup_dir: str) -> list[int]:
    """pids in `cgroup.procs` (raises OSError when unreadable)."""
    pids = []
    for line in lines_of(read_bounded(os.path.join(cgroup_dir, "cgroup.procs"),
                                      record_max=CGROUP_RECORD_MAX)):
        token = line.strip()
        if token.isdecimal() and token.isascii() and 0 < len(token) <= 10:
            pids.append(int(token))
    return pids


def _once(memo: dict[tuple[str, str], Any], key: tuple[str, str],
          compute: Callable[[], object]) -> Any:
    """`compute()` once per cycle and key: later callers get the same result, or the
    same OSError again (each caller counts its own error)."""
    if key not in memo:
        try:
            memo[key] = compute()
        except OSError as exc:
            memo[key] = exc
    got = memo[key]
    if isinstance(got, OSError):
        raise got
    return got


def read_procs_memo(cgroup_dir: str, memo: dict[tuple[str, str], Any]) -> list[int]:
    """`read_procs` once per cycle and directory."""
    return cast(list[int], _once(memo, ("procs", cgroup_dir), lambda: read_procs(cgroup_dir)))


def child_dirs(path: str, memo: dict[tuple[str, str], Any]) -> list[str]:
    """Sorted child directories of `path`, listed once per cycle ([] when unreadable)."""
    def listing() -> list[str]:
        if os.stat(path).st_nlink == LEAF_NLINK:  # no subdirectory: skip the listing
            return []  # of every interface file (cgroupfs.walk says why this holds)
        with os.scandir(path) as entries:
            return sorted(e.path for e in entries if e.is_dir(follow_symlinks=False))

    try:
        return cast(list[str], _once(memo, ("children", path), listing))
    except OSError:
        return []


def candidate_dirs(group: PodGroup, known_paths: set[str],
                   memo: dict[tuple[str, str], Any]) -> Iterator[str]:
    """Where to look for the pod's processes: its cgroups, then child directories of
    the anchor that are not targets themselves (containers the resolver did not list).
    In standalone mode every directory is a target, so a parent never borrows its
    children's processes."""
    for ref in group.members:
        yield ref.path
    for child in child_dirs(group.anchor.path, memo):
        if child not in known_paths:
            yield child

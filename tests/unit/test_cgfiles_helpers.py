"""Shared helpers of the test_cgfiles_* unit tests (fixture paths, refs, sample lookup)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from kpodmetrics.collectors.base import CollectContext
from kpodmetrics.pods.owner import CgroupRef, Owner
from kpodmetrics.samples import HistogramSample, Labels, Sample

Key = tuple[str, int, Labels]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "cgroup"


def k8s_refs(pod_dir: Path, containers: Iterable[str], *, uid: str = "uid-1",
             base_id: int = 1000, with_pod: bool = True) -> list[CgroupRef]:
    refs = []
    if with_pod:
        refs.append(CgroupRef(base_id, str(pod_dir),
                              Owner(uid, (("namespace", "ns"), ("pod", "p"), ("container", ""))),
                              pod_key=uid, pod_level=True))
    for i, name in enumerate(containers, start=1):
        refs.append(CgroupRef(base_id + i, str(pod_dir / name),
                              Owner(f"{uid}/{name}",
                                    (("namespace", "ns"), ("pod", "p"), ("container", name))),
                              pod_key=uid, pod_level=False))
    return refs


def standalone_ref(path: Path, cgroup_id: int, rel: str) -> CgroupRef:
    return CgroupRef(cgroup_id, str(path), Owner(rel, (("cgroup", rel),)), pod_key=rel,
                     pod_level=True)


def scalar(samples: Iterable[Sample | HistogramSample]) -> dict[Key, float]:
    """(family, cgroup id, labels) -> value; fails on duplicates (nothing is reported twice)."""
    out: dict[Key, float] = {}
    for s in samples:
        assert isinstance(s, Sample)
        key = (s.family.name, s.cgroup_id, s.labels)
        assert key not in out, f"reported twice: {key}"
        out[key] = s.value
    return out


def ctx_for(refs: list[CgroupRef], proc_root: str = "/nonexistent-proc") -> CollectContext:
    return CollectContext(targets=refs, cgroup_root="/", proc_root=proc_root)

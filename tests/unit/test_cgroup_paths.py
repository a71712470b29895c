"""cgroup path parsing for every cgroup driver x container runtime, plus odd layouts.

The expected UIDs and IDs are written out literally (the oracle is the layout the
kubelet and runtimes document), not derived with the parser's own helpers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kpodmetrics.pods.cgroup_paths import PodCgroup, normalize_uid, parse, parse_container_id

UID = "0c4a9f1e-7d2b-4c3a-9e8f-1a2b3c4d5e6f"
UID_ = UID.replace("-", "_")
CID = "3f1b2c" + "a" * 58  # 64 hex
HASH = "5d2e6b7f1c0a4e3f9b8d7c6a5e4f3a21"  # static pod config hash

CASES = [
    # systemd driver
    ("containerd systemd burstable",
     f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope",
     PodCgroup(UID, CID, "containerd")),
    ("containerd systemd besteffort pod dir",
     f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice",
     PodCgroup(UID, pod_level=True)),
    ("containerd systemd guaranteed",
     f"/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{CID}.scope",
     PodCgroup(UID, CID, "containerd")),
    ("cri-o systemd",
     f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{CID}.scope",
     PodCgroup(UID, CID, "cri-o")),
    ("cri-o systemd nested container subgroup",
     f"/kubepods.slice/kubepods-pod{UID_}.slice/crio-{CID}.scope/container",
     PodCgroup(UID, CID, "cri-o", nested=True)),
    ("cri-o conmon is pod overhead",
     f"/kubepods.slice/kubepods-pod{UID_}.slice/crio-conmon-{CID}.scope",
     PodCgroup(UID, "", "cri-o", nested=True)),
    ("docker systemd (cri-dockerd)",
     f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/docker-{CID}.scope",
     PodCgroup(UID, CID, "docker")),
    ("kubelet.slice nesting (kind, systemd)",
     f"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/"
     f"kubelet-kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope",
     PodCgroup(UID, CID, "containerd")),
    ("systemd-escaped dashes in the uid",
     "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
     + UID.replace("-", "\\x2d") + f".slice/cri-containerd-{CID}.scope",
     PodCgroup(UID, CID, "containerd")),
    ("escaped slice names",
     "/kubelet.slice/kubelet\\x2dkubepods.slice/kubelet\\x2dkubepods\\x2dburstable.slice/"
     f"kubelet-kubepods-burstable-pod{UID_}.slice",
     PodCgroup(UID, pod_level=True)),
    ("upper-case hex is normalised",
     f"/kubepods.slice/kubepods-pod{UID_.upper()}.slice/cri-containerd-{CID.upper()}.scope",
     PodCgroup(UID, CID, "containerd")),
    ("static pod (config hash uid)",
     f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{HASH}.slice",
     PodCgroup(HASH, pod_level=True)),
    # cgroupfs driver
    ("containerd cgroupfs", f"/kubepods/burstable/pod{UID}/{CID}", PodCgroup(UID, CID, "")),
    ("docker cgroupfs guaranteed", f"/kubepods/pod{UID}/{CID}", PodCgroup(UID, CID, "")),
    ("cri-o cgroupfs", f"/kubepods/besteffort/pod{UID}/crio-{CID}", PodCgroup(UID, CID, "cri-o")),
    ("cgroupfs pod dir", f"/kubepods/besteffort/pod{UID}", PodCgroup(UID, pod_level=True)),
    ("cgroupfs under kubelet (kind)", f"/kubelet/kubepods/burstable/pod{UID}/{CID}",
     PodCgroup(UID, CID, "")),
    ("sub-cgroup made by the container itself", f"/kubepods/pod{UID}/{CID}/init.scope",
     PodCgroup(UID, CID, "", nested=True)),
    ("unknown child of the pod dir", f"/kubepods/pod{UID}/not-a-container",
     PodCgroup(UID, nested=True)),
    # roots
    ("hybrid host absolute path",
     f"/sys/fs/cgroup/unified/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{CID}.scope",
     PodCgroup(UID, CID, "containerd")),
    ("daemonset host mount + test prefix",
     f"/host/sys/fs/cgroup/kpod-test-1/kubepods/pod{UID}", PodCgroup(UID, pod_level=True)),
    ("nested node (kind node inside docker)",
     f"/system.slice/docker-{CID}.scope/kubelet.slice/kubelet-kubepods.slice/"
     f"kubelet-kubepods-pod{UID_}.slice/cri-containerd-{CID}.scope",
     PodCgroup(UID, CID, "containerd")),
]

NOT_PODS = [
    "/",
    "/system.slice/containerd.service",
    f"/system.slice/docker-{CID}.scope",  # plain docker, not Kubernetes
    "/kubepods.slice",
    "/kubepods.slice/kubepods-burstable.slice",
    "/kubepods/besteffort",
    f"/user.slice/pod{UID}",  # no kubepods ancestor
    "/kubepods/podnot-a-uid",
    "/kubepods/pod1234",
    f"/kubepods.slice/kubepods-pod{UID_}.scope",  # a scope is not a pod slice
]


@pytest.mark.parametrize(("what", "path", "expected"), CASES, ids=[c[0] for c in CASES])
def test_layouts(what: str, path: str, expected: PodCgroup) -> None:
    assert parse(path) == expected


@pytest.mark.parametrize("path", NOT_PODS)
def test_not_pods(path: str) -> None:
    assert parse(path) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (f"containerd://{CID}", CID),
        (f"cri-o://{CID}", CID),
        (f"docker://{CID.upper()}", CID),
        (CID, CID),
        ("", ""),
    ],
)
def test_status_container_ids(raw: str, expected: str) -> None:
    assert parse_container_id(raw) == expected


def test_uid_forms() -> None:
    assert normalize_uid(UID_) == UID
    assert normalize_uid(HASH) == HASH
    assert normalize_uid("0c4a9f1e-7d2b") is None
    assert normalize_uid(UID + "0") is None


uids = st.uuids().map(str)
cids = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
qos = st.sampled_from(["", "burstable", "besteffort"])


@given(uid=uids, cid=cids, q=qos, nest_kubelet=st.booleans(),
       runtime=st.sampled_from(["cri-containerd", "crio", "docker"]))
def test_systemd_round_trip(uid: str, cid: str, q: str, nest_kubelet: bool, runtime: str) -> None:
    pre = "kubelet-kubepods" if nest_kubelet else "kubepods"
    parts = ["kubelet.slice"] if nest_kubelet else []
    parts.append(f"{pre}.slice")
    slice_prefix = f"{pre}-{q}" if q else pre
    if q:
        parts.append(f"{slice_prefix}.slice")
    parts.append(f"{slice_prefix}-pod{uid.replace('-', '_')}.slice")
    parts.append(f"{runtime}-{cid}.scope")
    got = parse("/" + "/".join(parts))
    assert got is not None
    assert (got.pod_uid, got.container_id, got.nested) == (uid, cid, False)


@given(uid=uids, cid=cids, q=qos)
def test_cgroupfs_round_trip(uid: str, cid: str, q: str) -> None:
    path = "/kubepods" + (f"/{q}" if q else "") + f"/pod{uid}"
    assert parse(path) == PodCgroup(uid, pod_level=True)
    assert parse(f"{path}/{cid}") == PodCgroup(uid, cid)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_arbitrary_paths_never_crash(path: str) -> None:
    got = parse(path)
    assert got is None or isinstance(got, PodCgroup)

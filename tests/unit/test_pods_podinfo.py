"""Reading pods from API JSON: all status lists, static pods, labels, malformed input."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kpodmetrics.pods.podinfo import MalformedPod, PodInfo, label_name, parse_pod
from tests.k8s_api_server import make_pod

A, B, C, D = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)


def test_all_status_lists_and_restarts() -> None:
    pod = make_pod("p", namespace="ns", uid="0C4A9F1E-7D2B-4C3A-9E8F-1A2B3C4D5E6F",
                   containers={"app": A, "pending": ""}, init_containers={"init": B},
                   ephemeral_containers={"debug": C}, runtime="cri-o",
                   labels={"app": "web", "tier": "x"})
    pod["status"]["containerStatuses"][0]["lastState"] = {
        "terminated": {"containerID": f"cri-o://{D}"}}
    got = parse_pod(pod, ("tier", "missing"))
    assert got == PodInfo(
        uid="0c4a9f1e-7d2b-4c3a-9e8f-1a2b3c4d5e6f", namespace="ns", name="p",
        containers={A: "app", B: "init", C: "debug", D: "app"}, labels=("x", ""),
        cgroup_uid="", resource_version="")


def test_static_pod_hash() -> None:
    pod = make_pod("etcd-n", annotations={"kubernetes.io/config.mirror": "ABCDEF" + "0" * 26})
    assert parse_pod(pod).cgroup_uid == "abcdef" + "0" * 26


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.pop("metadata"), "metadata.uid"),
        (lambda p: p["metadata"].update(uid=7), "metadata.uid"),
        (lambda p: p["metadata"].update(name=""), "metadata.name"),
        (lambda p: p["metadata"].update(labels=["x"]), "metadata.labels"),
        (lambda p: p["status"].update(containerStatuses={"x": 1}), "containerStatuses"),
        (lambda p: p["status"]["containerStatuses"].append("x"), "containerStatuses[]"),
        (lambda p: p["status"]["containerStatuses"][0].update(containerID=5), "containerID"),
        (lambda p: p.update(status="Running"), "status"),
    ],
)
def test_malformed_names_the_field(mutate: Any, message: str) -> None:
    pod = make_pod("p", containers={"c": A})
    mutate(pod)
    with pytest.raises(MalformedPod, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_pod(pod)


def test_label_names() -> None:
    assert label_name("app.kubernetes.io/name") == "label_app_kubernetes_io_name"
    assert label_name("team") == "label_team"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["metadata", "uid", "name", "namespace", "status", "containerStatuses",
                         "containerID", "labels", "annotations", "lastState", "terminated",
                         "initContainerStatuses", "x"]), inner, max_size=5),
    max_leaves=30,
)


@given(json_values)
def test_any_json_is_a_pod_or_malformed(obj: Any) -> None:
    try:
        got = parse_pod(obj, ("x",))
    except MalformedPod:
        return
    assert isinstance(got, PodInfo) and got.uid and got.name and got.namespace


def test_backoff_bounds() -> None:
    from kpodmetrics.pods.watcher import backoff_delay

    lo = [backoff_delay(n, 0.5, 30.0, lambda: 0.0) for n in range(1, 10)]
    hi = [backoff_delay(n, 0.5, 30.0, lambda: 1.0) for n in range(1, 10)]
    assert lo == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]
    assert hi == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]

"""The kustomize tree renders, validates against the Kubernetes 1.32 schemas, and the
DaemonSet keeps its least-privilege shape (docs/deploy.md argues each item).

Needs `kubectl` (kustomize v5). Missing tools skip locally and fail when CI=true.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from kpodmetrics import config

REPO = Path(__file__).resolve().parents[2]
KUSTOMIZE = REPO / "deploy" / "kustomize"
PROFILES = ("minimal", "standard", "comprehensive")
COMPONENTS = ("servicemonitor", "prometheusrule", "grafana-dashboards", "networkpolicy",
              "old-kernel-memlock")
K8S_VERSION = "1.32.0"
# Kinds whose schema kubernetes-validate does not ship (prometheus-operator CRDs):
# validated below against a schema of the fields we use instead.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}

DEFAULT_CAPS = ["BPF", "PERFMON", "SYS_PTRACE", "DAC_READ_SEARCH"]
HOST_MOUNTS = {
    "/host/sys/fs/cgroup": "/sys/fs/cgroup",
    "/host/proc": "/proc",
    "/sys/kernel/btf": "/sys/kernel/btf",
    "/sys/kernel/tracing": "/sys/kernel/tracing",
}

Obj = dict[str, Any]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required in CI but is not on PATH")
        pytest.skip(f"{name} not on PATH")
    return path


@functools.cache
def _render(path: str) -> tuple[Obj, ...]:
    out = subprocess.run([_tool("kubectl"), "kustomize", path], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, f"kubectl kustomize {path} failed:\n{out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def render(rel: str) -> list[Obj]:
    return list(_render(str(KUSTOMIZE / rel)))


@functools.cache
def _render_with_components(overlay: str, components: tuple[str, ...]) -> tuple[Obj, ...]:
    """Render an overlay plus components the way a user's own kustomization would."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        rel = os.path.relpath(KUSTOMIZE, tmp)
        kust = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [f"{rel}/overlays/{overlay}"],
            "components": [f"{rel}/components/{c}" for c in components],
        }
        Path(tmp, "kustomization.yaml").write_text(yaml.safe_dump(kust))
        return _render(tmp)


def render_all(overlay: str = "standard") -> list[Obj]:
    return list(_render_with_components(overlay, COMPONENTS))


def by_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[Obj], kind: str) -> Obj:
    found = by_kind(objs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def agent_container(objs: list[Obj]) -> Obj:
    containers = one(objs, "DaemonSet")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["agent"]
    return dict(containers[0])


def all_renders() -> Iterator[tuple[str, list[Obj]]]:
    yield "base", render("base")
    for p in PROFILES:
        yield f"overlays/{p}", render(f"overlays/{p}")
        yield f"overlays/{p}+components", render_all(p)


# -- schema validation --------------------------------------------------------------------

_SERVICEMONITOR_SCHEMA: Obj = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {"type": "object", "required": ["matchLabels"]},
                "namespaceSelector": {"type": "object"},
                "endpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["port"],
                    "properties": {
                        "port": {"type": "string"}, "path": {"type": "string"},
                        "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                        "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                        "honorLabels": {"type": "boolean"},
                        "relabelings": {"type": "array", "items": {"type": "object"}},
                    },
                    "additionalProperties": False}},
            },
            "additionalProperties": False,
        },
    },
}
_PROMETHEUSRULE_SCHEMA: Obj = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {"spec": {
        "type": "object", "required": ["groups"], "additionalProperties": False,
        "properties": {"groups": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["name", "rules"],
            "properties": {"name": {"type": "string"}, "rules": {"type": "array", "items": {
                "type": "object", "required": ["expr"],
                "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                "properties": {
                    "alert": {"type": "string"}, "record": {"type": "string"},
                    "expr": {"type": "string"}, "for": {"type": "string"},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "annotations": {"type": "object",
                                    "additionalProperties": {"type": "string"}},
                },
                "additionalProperties": False}}},
            "additionalProperties": False}}}}},
}
CRD_SCHEMAS = {"ServiceMonitor": _SERVICEMONITOR_SCHEMA, "PrometheusRule": _PROMETHEUSRULE_SCHEMA}


@pytest.mark.parametrize("name", ["base", *[f"overlays/{p}" for p in PROFILES],
                                  *[f"overlays/{p}+components" for p in PROFILES]])
def test_renders_and_validates(name: str) -> None:
    objs = dict(all_renders())[name]
    assert objs, f"{name} rendered nothing"
    skipped = []
    for obj in objs:
        ident = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            assert obj["kind"] in CRD_KINDS, f"no schema for {ident}: unexpected kind"
            assert obj["apiVersion"] == "monitoring.coreos.com/v1", ident
            jsonschema.validate(obj, CRD_SCHEMAS[obj["kind"]])
            skipped.append(obj["kind"])
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {ident} is invalid for Kubernetes {K8S_VERSION}: {exc}")
    if name.endswith("+components"):
        assert sorted(skipped) == sorted(CRD_KINDS)
    else:
        assert skipped == []


def test_each_component_renders_on_its_own() -> None:
    for comp in COMPONENTS:
        objs = list(_render_with_components("standard", (comp,)))
        assert one(objs, "DaemonSet")
        for obj in objs:
            if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding", "Namespace"):
                assert obj["metadata"].get("namespace") == "kpod-metrics", (
                    f"{comp}: {obj['kind']} would land in the kubectl context's namespace")


# -- the DaemonSet's security shape ----------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_daemonset_least_privilege(profile: str) -> None:
    objs = render(f"overlays/{profile}")
    ds = one(objs, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    for flag in ("hostNetwork", "hostIPC"):
        assert pod.get(flag, False) is False, flag
    # measured (docs/deploy.md, tests/kernel/test_pid_namespace.py): cgroup.procs names
    # the host's processes only in the host pid namespace
    assert pod["hostPID"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    c = agent_container(objs)
    sc = c["securityContext"]
    # measured (docs/deploy.md): default profiles gate bpf() behind CAP_SYS_ADMIN
    assert sc["seccompProfile"]["type"] == "Unconfined"
    assert sc["privileged"] is False
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["capabilities"]["add"] == DEFAULT_CAPS
    assert "SYS_ADMIN" not in sc["capabilities"]["add"]
    assert "SYS_RESOURCE" not in sc["capabilities"]["add"]
    assert not pod.get("initContainers")


def test_memlock_component_adds_only_sys_resource() -> None:
    objs = list(_render_with_components("standard", ("old-kernel-memlock",)))
    assert agent_container(objs)["securityContext"]["capabilities"]["add"] == [
        *DEFAULT_CAPS, "SYS_RESOURCE"]


def test_host_paths_are_read_only_and_expected() -> None:
    objs = render("base")
    pod = one(objs, "DaemonSet")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    host_mounts = {}
    for m in agent_container(objs)["volumeMounts"]:
        vol = volumes[m["name"]]
        if "hostPath" in vol:
            assert m.get("readOnly") is True, f"hostPath mount {m['mountPath']} is writable"
            assert m.get("mountPropagation", "None") in ("None", "HostToContainer")
            host_mounts[m["mountPath"]] = vol["hostPath"]["path"]
        else:
            assert "emptyDir" in vol, f"unexpected volume {m['name']}"
    assert host_mounts == HOST_MOUNTS


def test_daemonset_scheduling_and_rollout() -> None:
    objs = render("base")
    ds = one(objs, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["tolerations"] == [{"operator": "Exists"}], "must run on every node"
    assert pod["priorityClassName"] == "system-node-critical"
    upd = ds["spec"]["updateStrategy"]
    assert upd["type"] == "RollingUpdate" and upd["rollingUpdate"]["maxUnavailable"]
    c = agent_container(objs)
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert [p["containerPort"] for p in c["ports"]] == [9090]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for key in ("requests", "limits"):
        assert set(c["resources"][key]) == {"cpu", "memory"}
    # the ConfigMap the container reads is the generated one (hash suffix resolved)
    cm = one(objs, "ConfigMap")
    assert c["envFrom"] == [{"configMapRef": {"name": cm["metadata"]["name"]}}]


def test_rbac_is_pods_read_only() -> None:
    objs = render("base")
    role = one(objs, "ClusterRole")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    binding = one(objs, "ClusterRoleBinding")
    sa = one(objs, "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": sa["metadata"]["namespace"]}]
    assert not by_kind(objs, "Role") and not by_kind(objs, "RoleBinding")


def test_service_is_headless_on_9090_and_selects_the_agent() -> None:
    objs = render("base")
    svc = one(objs, "Service")
    assert svc["spec"]["clusterIP"] == "None"
    assert [(p["name"], p["port"]) for p in svc["spec"]["ports"]] == [("metrics", 9090)]
    tmpl_labels = one(objs, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= tmpl_labels.items()


def test_servicemonitor_selects_the_service_and_honors_labels() -> None:
    objs = render_all()
    sm = one(objs, "ServiceMonitor")
    svc = one(objs, "Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert svc["metadata"]["labels"][sm["spec"]["jobLabel"]] == "kpod-metrics"
    ports = {p["name"] for p in svc["spec"]["ports"]}
    for ep in sm["spec"]["endpoints"]:
        assert ep["port"] in ports
        assert ep["honorLabels"] is True  # or namespace/pod become exported_namespace/...


def test_networkpolicy_allows_scrape_in_and_api_dns_otlp_out() -> None:
    np = one(render_all(), "NetworkPolicy")
    assert set(np["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    ingress_ports = {p["port"] for r in np["spec"]["ingress"] for p in r["ports"]}
    assert ingress_ports == {9090}
    egress_ports = {p["port"] for r in np["spec"]["egress"] for p in r["ports"]}
    assert egress_ports == {53, 443, 6443, 4317, 4318}


def test_dashboard_configmap_fits_client_side_apply() -> None:
    cms = [c for c in by_kind(render_all(), "ConfigMap")
           if c["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    assert len(cms) == 1
    assert set(cms[0]["data"]) == {"kpod-metrics-pod.json", "kpod-metrics-agent.json"}
    size = sum(len(v) for v in cms[0]["data"].values())
    # kubectl apply stores the object in an annotation limited to 256 KiB
    assert size < 200 * 1024


# -- settings: the ConfigMap passes the agent's own validation --------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_configmap_settings_are_valid_for_the_agent(profile: str) -> None:
    objs = render(f"overlays/{profile}")
    data = one(objs, "ConfigMap")["data"]
    env = dict(data, NODE_NAME="node-a")
    settings = config.load(env=env)
    assert settings.profile == profile
    assert settings.mode == "kubernetes"
    assert settings.port == 9090
    assert settings.cgroup_root == "/host/sys/fs/cgroup"
    assert settings.proc_root == "/host/proc"


def test_unknown_profile_in_an_overlay_fails_at_agent_start() -> None:
    """A typo in an overlay renders fine (kustomize cannot know) but the agent refuses it."""
    data = dict(one(render("overlays/standard"), "ConfigMap")["data"])
    data["KPOD_PROFILE"] = "comprehensiv"
    with pytest.raises(config.ConfigError) as err:
        config.load(env=data)
    assert "KPOD_PROFILE" in str(err.value)


def test_overlays_differ_only_in_profile_and_resources() -> None:
    def strip(objs: list[Obj]) -> list[Obj]:
        out = []
        for o in objs:
            o = yaml.safe_load(yaml.safe_dump(o))
            if o["kind"] == "ConfigMap":
                o["metadata"]["name"] = "x"
                o["data"].pop("KPOD_PROFILE")
            if o["kind"] == "DaemonSet":
                spec = o["spec"]["template"]["spec"]
                spec["containers"][0].pop("resources")
                spec["containers"][0]["envFrom"] = []
            out.append(o)
        return out

    ref = strip(render("overlays/standard"))
    for p in ("minimal", "comprehensive"):
        assert strip(render(f"overlays/{p}")) == ref, p

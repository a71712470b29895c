#!/usr/bin/env python3
"""Run the agent container the way the rendered DaemonSet runs it, with podman.

The DaemonSet's security context, capabilities, host paths and environment are read
from `kubectl kustomize deploy/kustomize/overlays/<overlay>` and turned into podman
arguments, so what is tested here (tests/e2e/test_image.py) and measured
(deploy/capabilities.py) is the manifest itself, not a hand-copied list.

    python deploy/podman_run.py --overlay standard --image kpod-metrics:dev \\
        --env KPOD_MODE=standalone --print

Kubernetes features with no podman meaning are translated or refused explicitly:
emptyDir (memory) -> tmpfs of its sizeLimit; the downward API's spec.nodeName -> the
given node name; hostNetwork false -> podman's host network only when asked (`--host-network`,
so the test can reach the port without a CNI).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent
Obj = dict[str, Any]


@dataclass
class AgentSpec:
    """What the DaemonSet's agent container gets, in runtime terms."""

    capabilities: list[str]
    read_only_root: bool
    no_new_privileges: bool
    seccomp: str
    """RuntimeDefault, Unconfined or Localhost (container level, else pod level)."""
    user: str
    host_pid: bool
    mounts: list[tuple[str, str, bool, str]] = field(default_factory=list)
    """(host path, container path, read-only, propagation)."""
    tmpfs: list[tuple[str, str]] = field(default_factory=list)
    """(container path, size)."""
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)


class ManifestError(ValueError):
    """The rendered manifest has something this translation cannot represent."""


def render(overlay: str) -> list[Obj]:
    out = subprocess.run(["kubectl", "kustomize", str(DEPLOY / "kustomize" / "overlays" / overlay)],
                         capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def agent_spec(docs: Sequence[Obj], node_name: str) -> AgentSpec:
    ds = _one(docs, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    [ctr] = [c for c in pod["containers"] if c["name"] == "agent"]
    sc = ctr.get("securityContext", {})
    caps = sc.get("capabilities", {})
    if caps.get("drop") != ["ALL"]:
        raise ManifestError(f"agent drops {caps.get('drop')}, expected ['ALL']")
    seccomp = (sc.get("seccompProfile") or pod.get("securityContext", {}).get("seccompProfile")
               or {"type": "RuntimeDefault"})["type"]
    spec = AgentSpec(
        capabilities=list(caps.get("add", [])),
        read_only_root=bool(sc.get("readOnlyRootFilesystem")),
        no_new_privileges=sc.get("allowPrivilegeEscalation") is False,
        seccomp=seccomp,
        user=f"{sc.get('runAsUser', 0)}:{sc.get('runAsGroup', 0)}",
        host_pid=bool(pod.get("hostPID")),
        args=list(ctr.get("args", [])),
    )
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for vm in ctr.get("volumeMounts", []):
        vol = volumes[vm["name"]]
        if "hostPath" in vol:
            prop = {"HostToContainer": "rslave", "Bidirectional": "rshared"}.get(
                vm.get("mountPropagation", "None"), "rprivate")
            spec.mounts.append((vol["hostPath"]["path"], vm["mountPath"],
                                bool(vm.get("readOnly")), prop))
        elif "emptyDir" in vol:
            spec.tmpfs.append((vm["mountPath"], str(vol["emptyDir"].get("sizeLimit", "64Mi"))))
        else:
            raise ManifestError(f"volume {vm['name']}: only hostPath and emptyDir are translated")
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    for src in ctr.get("envFrom", []):
        spec.env.update(configmaps[src["configMapRef"]["name"]])
    for e in ctr.get("env", []):
        if "value" in e:
            spec.env[e["name"]] = str(e["value"])
        elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName":
            spec.env[e["name"]] = node_name
        else:
            raise ManifestError(f"env {e['name']}: only values and spec.nodeName are translated")
    return spec


def podman_args(spec: AgentSpec, image: str, *, name: str, env: Mapping[str, str] | None = None,
                without: Sequence[str] = (), host_network: bool = True, remove: bool = True,
                extra_args: Sequence[str] = ()) -> list[str]:
    """`podman run` arguments for the spec, less the capabilities in `without`.
    `remove=False` keeps the stopped container so its exit code can be read."""
    caps = [c for c in spec.capabilities if c not in set(without)]
    out = ["podman", "run", *(["--rm"] if remove else []), "--detach", "--name", name,
           "--user", spec.user, "--cap-drop", "ALL"]
    if caps:
        out += ["--cap-add", ",".join(caps)]
    if spec.read_only_root:
        out.append("--read-only")
    if spec.no_new_privileges:
        out += ["--security-opt", "no-new-privileges"]
    if spec.seccomp == "Unconfined":
        out += ["--security-opt", "seccomp=unconfined"]
    elif spec.seccomp != "RuntimeDefault":
        raise ManifestError(f"seccomp {spec.seccomp}: only RuntimeDefault and Unconfined are translated")
    if host_network:
        out += ["--network", "host"]
    if spec.host_pid:
        out += ["--pid", "host"]
    for host, ctr, ro, prop in spec.mounts:
        opts = ",".join(filter(None, ["ro" if ro else "rw", prop]))
        out += ["-v", f"{host}:{ctr}:{opts}"]
    for path, size in spec.tmpfs:
        out += ["--tmpfs", f"{path}:rw,size={_bytes(size)}"]
    for k, v in {**spec.env, **(env or {})}.items():
        out += ["-e", f"{k}={v}"]
    return [*out, image, *(list(extra_args) or spec.args)]


CONTAINERS_CONF = str(DEPLOY.parent / "scripts" / "image" / "containers.conf")


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """podman with the project's containers.conf (no default ulimits, runc)."""
    env = {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", CONTAINERS_CONF)}
    return subprocess.run(["podman", *args], capture_output=True, text=True, env=env,
                          check=check, timeout=timeout)


@contextlib.contextmanager
def running(image: str, name: str, port: int, *, overlay: str = "standard",
            without: Sequence[str] = (), env: Mapping[str, str] | None = None,
            seccomp: str | None = None) -> Iterator[str]:
    """The agent container started as the overlay's DaemonSet starts it, standalone on
    127.0.0.1:`port` (host network) with a 1 s poll interval; removed afterwards.
    `without` removes capabilities and `seccomp` replaces the profile, for measuring.

    The host's namespaces are named by this process (KPOD_HOST_PID): on a node that is
    pid 1, but sandboxes (like the development VM, whose pid 1 refuses even root a look
    at its namespace links) hide it, and this process runs in the host's namespaces."""
    spec = agent_spec(render(overlay), "podman-node")
    if seccomp:
        spec.seccomp = seccomp
    cmd = podman_args(spec, image, name=name, without=without, remove=False, env={
        "KPOD_MODE": "standalone", "KPOD_PORT": str(port), "KPOD_ADDRESS": "127.0.0.1",
        "KPOD_POLL_INTERVAL": "1s", "KPOD_HOST_PID": str(os.getpid()), **(env or {})})
    podman(*cmd[1:])
    try:
        yield name
    finally:
        podman("rm", "-f", "-t", "2", name, check=False)


def scrape(port: int) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample on the agent's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        body = r.read().decode()
    return [(s.name, dict(s.labels), s.value)
            for fam in text_string_to_metric_families(body) for s in fam.samples]


def _bytes(quantity: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
    for suffix, mult in units.items():
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * mult
    return int(quantity)


def _one(docs: Sequence[Obj], kind: str) -> Obj:
    found = [d for d in docs if d.get("kind") == kind]
    if len(found) != 1:
        raise ManifestError(f"expected one {kind}, found {len(found)}")
    return found[0]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--overlay", default="standard")
    ap.add_argument("--image", default="kpod-metrics:dev")
    ap.add_argument("--name", default="kpod-metrics")
    ap.add_argument("--node-name", default=os.uname().nodename)
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--without", action="append", default=[], metavar="CAP")
    ap.add_argument("--print", action="store_true", help="print the command, do not run it")
    ns = ap.parse_args(argv)
    spec = agent_spec(render(ns.overlay), ns.node_name)
    env = dict(kv.split("=", 1) for kv in ns.env)
    cmd = podman_args(spec, ns.image, name=ns.name, env=env, without=ns.without)
    if ns.print:
        print(shlex.join(cmd))
        return 0
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main())

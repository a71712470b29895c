"""Cluster configuration without the Kubernetes client: the mode decision, in-cluster
access, kubeconfig contexts and static credentials, merging, and the plugin cases
that are handed to the client library."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kpodmetrics.pods import clusterconfig
from kpodmetrics.pods.clusterconfig import ConfigError, kubeconfig_access


def kubeconfig(path: Path, *, user: dict[str, Any], cluster: dict[str, Any] | None = None,
               current: str = "c", extra: dict[str, Any] | None = None) -> str:
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": current,
        "clusters": [{"name": "k", "cluster": cluster or {"server": "https://api.example:6443"}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        **(extra or {}),
    }
    path.write_text(json.dumps(doc))
    return str(path)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_mode_decision_reads_files_and_environment_only(tmp_path: Path) -> None:
    kc = tmp_path / "kc"
    assert not clusterconfig.cluster_configured(str(kc), {})
    kc.write_text("{}")
    assert clusterconfig.cluster_configured(str(kc), {})
    home_default = tmp_path / "home"
    (home_default / ".kube").mkdir(parents=True)
    env = {"HOME": str(home_default)}
    assert not clusterconfig.cluster_configured("", {"KUBECONFIG": str(tmp_path / "none")})
    assert clusterconfig.cluster_configured("", {"KUBECONFIG": f"{tmp_path / 'none'}:{kc}"})
    # and it imports no Kubernetes client (a fresh interpreter, same check)
    code = ("import sys; from kpodmetrics.pods.clusterconfig import cluster_configured as c; "
            f"c('', {env!r}); import kpodmetrics.service; "
            "print(sorted(m for m in sys.modules if m.startswith('kubernetes')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_token_and_ca_data(tmp_path: Path) -> None:
    a = kubeconfig_access([kubeconfig(
        tmp_path / "kc", user={"token": "t0k"},
        cluster={"server": "https://api.example:6443/", "certificate-authority-data": b64(b"PEM"),
                 "tls-server-name": "kubernetes"})])
    assert a is not None
    assert (a.server, a.token, a.ca_data, a.tls_server_name, a.verify) == \
        ("https://api.example:6443", "t0k", b"PEM", "kubernetes", True)


def test_relative_files_resolve_against_the_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    a = kubeconfig_access([kubeconfig(
        tmp_path / "sub" / "kc",
        user={"tokenFile": "tok", "client-certificate": "c.pem", "client-key": "/abs/k.pem"},
        cluster={"server": "https://x", "certificate-authority": "ca.pem",
                 "insecure-skip-tls-verify": True})])
    assert a is not None
    assert a.token_file == str(tmp_path / "sub" / "tok")
    assert a.cert_file == str(tmp_path / "sub" / "c.pem")
    assert a.key_file == "/abs/k.pem"
    assert a.ca_file == str(tmp_path / "sub" / "ca.pem")
    assert a.verify is False


def test_first_file_wins_when_merging(tmp_path: Path) -> None:
    first = kubeconfig(tmp_path / "a", user={"token": "first"})
    second = kubeconfig(tmp_path / "b", user={"token": "second"}, current="other",
                        cluster={"server": "https://second"})
    a = kubeconfig_access([str(tmp_path / "missing"), first, second])
    assert a is not None and a.token == "first" and a.server == "https://api.example:6443"


@pytest.mark.parametrize("user", [{"exec": {"command": "aws"}},
                                  {"auth-provider": {"name": "oidc"}}])
def test_credential_plugins_go_to_the_client_library(tmp_path: Path, user: dict[str, Any]) -> None:
    assert kubeconfig_access([kubeconfig(tmp_path / "kc", user=user)]) is None


@pytest.mark.parametrize(("doc", "match"), [
    ({"clusters": 7}, "clusters is not a list"),
    ({"current-context": "c", "contexts": []}, "context 'c' is not defined"),
    ({}, "no current-context"),
])
def test_broken_kubeconfigs_name_the_problem(tmp_path: Path, doc: dict[str, Any],
                                             match: str) -> None:
    kc = tmp_path / "kc"
    kc.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=match):
        kubeconfig_access([str(kc)])


def test_bad_server_and_base64(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not an http"):
        kubeconfig_access([kubeconfig(tmp_path / "a", user={}, cluster={"server": "api:6443"})])
    with pytest.raises(ConfigError, match="not base64"):
        kubeconfig_access([kubeconfig(tmp_path / "b", user={"client-key-data": "%%%"})])


def test_in_cluster_host_port_and_ipv6(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    monkeypatch.setattr(clusterconfig, "SERVICE_ACCOUNT_TOKEN", str(token))
    monkeypatch.setattr(clusterconfig, "SERVICE_ACCOUNT_CA", str(ca))
    with pytest.raises(ConfigError, match="does not exist"):
        clusterconfig.in_cluster_access(env)
    token.write_text("t")
    ca.write_text("pem")
    assert clusterconfig.in_cluster(env)
    a = clusterconfig.in_cluster_access(env)
    assert (a.server, a.token_file, a.ca_file) == ("https://[fd00::1]:443", str(token), str(ca))

"""A signal the kernel refuses is reported, not exported as zero: probe --json, the
export (kpod_collector_state, kpod_signal_info, no HELP/TYPE for its family) and the
landing page agree with the kernel's refusal.

The refusal is real: a TCP signal is pinned (KPOD_BPF_VARIANTS) to a program variant
this kernel does not load or attach, the first of CANDIDATES that probe finds dark
(fentry is refused on the development host; sock_*_length tracepoints need 6.3).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import require_root
from tests.e2e.agent_util import run_agent

CANDIDATES = (("tcp_send", "fentry", "kpod_net_tcp_sent_bytes_total"),
              ("tcp_send", "tp_btf", "kpod_net_tcp_sent_bytes_total"),
              ("tcp_recv", "fentry", "kpod_net_tcp_received_bytes_total"),
              ("tcp_recv", "tp_btf", "kpod_net_tcp_received_bytes_total"))
LIVE = "kpod_net_tcp_connections_opened_total"
ONLY_NET = ("--collectors", "cpu=off,mem=off,diskio=off,memory=off,iface=off,fs=off,"
            "blockio=off,cpustat=off,pressure=off")


def probe(forced: str) -> dict:  # type: ignore[type-arg]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPOD_")}
    env["KPOD_BPF_VARIANTS"] = forced
    r = subprocess.run([sys.executable, "-m", "kpodmetrics", "probe", "--json"],
                       capture_output=True, text=True, timeout=180, env=env)
    assert r.returncode == 0, r.stderr
    doc: dict = json.loads(r.stdout)  # type: ignore[type-arg]
    return doc


@pytest.mark.e2e
def test_a_refused_variant_is_unavailable_in_probe_export_and_landing_page() -> None:
    require_root()
    for sig, var, fam in CANDIDATES:
        doc = probe(f"{sig}={var}")
        if not doc["families"][fam]["available"]:
            break
    else:
        pytest.skip("every candidate TCP variant loads and attaches on this kernel")
    entry = doc["families"][fam]
    assert (entry["collector"], entry["signal"], entry["variant"], entry["program"]) == (
        "net", sig, "", "")
    assert f"{var}: " in entry["reason"]  # the kernel's (libbpf's) reason for the refusal
    live = doc["families"][LIVE]
    assert live["available"] and live["variant"] and live["program"].startswith("kpod_tcp_")
    assert doc["collectors"]["net"]["state"] == "degraded"
    assert doc["collectors"]["net"]["source"] == "ebpf" and doc["collectors"]["memory"]["source"] == "files"

    with run_agent(*ONLY_NET, env={"KPOD_BPF_VARIANTS": f"{sig}={var}"}) as agent:
        _, body = agent.get("/metrics")
        text = body.decode()
        assert f"# TYPE {fam} " not in text and f"\n{fam}" not in text
        assert f"# TYPE {LIVE} counter" in text
        samples = agent.samples()
        state = {lab["state"]: v for n, lab, v in samples
                 if n == "kpod_collector_state" and lab["collector"] == "net"}
        assert state == {"up": 0.0, "degraded": 1.0, "down": 0.0}
        info = [lab for n, lab, v in samples if n == "kpod_signal_info" and lab["family"] == fam]
        assert len(info) == 1 and info[0]["available"] == "false" and info[0]["signal"] == sig
        assert info[0]["variant"] == ""
        live_info = [lab for n, lab, v in samples
                     if n == "kpod_signal_info" and lab["family"] == LIVE]
        assert live_info[0]["available"] == "true" and live_info[0]["variant"] == live["variant"]
        _, page = agent.get("/")
        assert f"<td>{sig}</td>" in page.decode() and "<td>degraded</td>" in page.decode()

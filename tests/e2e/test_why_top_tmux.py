"""`kpod-metrics top` driven in a real terminal (tmux): keys sent, the pane captured.

The agent is replaced by a served /metrics page whose counters grow at known rates
with wall time (value = rate x seconds since start), so the s/s figures top shows
must be those rates, whatever moment top happens to read the page at.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import require

pytestmark = pytest.mark.e2e

# pod -> (run-queue wait s/s, io pressure s/s, OOM kills, ...)
RATES = {"shop/web-1": (0.50, 0.05), "shop/db-0": (0.10, 0.80), "kube-system/dns": (0.02, 0.0)}
T0 = time.monotonic()


def page() -> bytes:
    t = time.monotonic() - T0
    out = ["# TYPE kpod_cpu_runqueue_latency_seconds histogram",
           "# TYPE kpod_pressure_io_waiting_seconds_total counter",
           "# TYPE kpod_mem_oom_kills_total counter"]
    for pod, (cpu, io) in RATES.items():
        ns, name = pod.split("/")
        labels = f'namespace="{ns}",pod="{name}",container="c",node="n"'
        out.append(f"kpod_cpu_runqueue_latency_seconds_sum{{{labels}}} {cpu * t:.6f}")
        out.append(f"kpod_cpu_runqueue_latency_seconds_count{{{labels}}} {int(1000 * t)}")
        out.append(f"kpod_pressure_io_waiting_seconds_total{{{labels}}} {io * t:.6f}")
        out.append(f"kpod_mem_oom_kills_total{{{labels}}} 0")
    return ("\n".join(out) + "\n").encode()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = page()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def served() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


class Tmux:
    def __init__(self, socket: str) -> None:
        self.socket = socket

    def run(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True,
                              capture_output=True, text=True).stdout

    def pane(self) -> list[str]:
        return self.run("capture-pane", "-p", "-t", "top").splitlines()

    def wait_for(self, predicate: str, timeout: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        while time.monotonic() < deadline:
            lines = self.pane()
            if any(predicate in line for line in lines):
                return lines
            time.sleep(0.2)
        raise AssertionError(f"{predicate!r} never showed; pane:\n" + "\n".join(lines))

    def alive(self) -> bool:
        return subprocess.run(["tmux", "-L", self.socket, "has-session", "-t", "top"],
                              capture_output=True).returncode == 0


def order(lines: list[str]) -> list[str]:
    pods = [p for p in RATES]
    rows = [line.split()[0] for line in lines if line.split() and line.split()[0] in pods]
    return rows


def figures(lines: list[str], pod: str) -> list[str]:
    return next(line.split() for line in lines if line.split() and line.split()[0] == pod)


def test_top_ranks_sorts_on_keys_and_quits() -> None:
    require(shutil.which("tmux") is not None, "tmux (Debian package) drives the terminal")
    sock = f"kpod-test-top-{os.getpid()}"
    tmux = Tmux(sock)
    with served() as url:
        cmd = f"{sys.executable} -m kpodmetrics top --url {url} --interval 1s"
        tmux.run("new-session", "-d", "-s", "top", "-x", "150", "-y", "20",
                 "env", "TERM=xterm-256color", *cmd.split())
        try:
            lines = tmux.wait_for("3 pods, updated")
            time.sleep(1.5)  # one more refresh: the window is then a full interval
            lines = tmux.wait_for("3 pods, updated")
            assert order(lines) == ["shop/web-1", "shop/db-0", "kube-system/dns"], lines
            cells = figures(lines, "shop/web-1")
            # POD, CPU STARVED s/s, MEM (n/a: not served), IO STALL, SYSCALL (n/a), RETRANS, OOM
            assert float(cells[1]) == pytest.approx(0.50, rel=0.1), cells
            assert float(cells[3]) == pytest.approx(0.05, rel=0.1), cells
            assert cells[2] == "n/a" and cells[4] == "n/a", "absent families are n/a, not 0"
            tmux.run("send-keys", "-t", "top", "i")
            lines = tmux.wait_for("sort: io")
            assert order(lines) == ["shop/db-0", "shop/web-1", "kube-system/dns"], lines
            assert float(figures(lines, "shop/db-0")[3]) == pytest.approx(0.80, rel=0.1)
            tmux.run("send-keys", "-t", "top", "c")
            lines = tmux.wait_for("sort: cpu")
            assert order(lines)[0] == "shop/web-1"
            tmux.run("send-keys", "-t", "top", "q")
            deadline = time.monotonic() + 10
            while tmux.alive() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not tmux.alive(), "q ends top (and with it the tmux session)"
        finally:
            with contextlib.suppress(subprocess.CalledProcessError):
                tmux.run("kill-server")


def test_top_says_when_the_agent_is_unreachable() -> None:
    require(shutil.which("tmux") is not None, "tmux (Debian package) drives the terminal")
    tmux = Tmux(f"kpod-test-top-{os.getpid()}-down")
    with served() as url:
        pass  # closed again: nobody listens there now
    cmd = f"{sys.executable} -m kpodmetrics top --url {url} --interval 1s"
    tmux.run("new-session", "-d", "-s", "top", "-x", "150", "-y", "10",
             "env", "TERM=xterm-256color", *cmd.split())
    try:
        lines = tmux.wait_for("agent unreachable")
        assert any("cannot reach the agent at" in line for line in lines)
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            tmux.run("kill-server")

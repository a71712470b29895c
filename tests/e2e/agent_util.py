"""Start the agent as a real process and scrape it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from tests.bpf_owned import Tracker, still_loaded
from tests.conftest import slow_factor

_OWNED: set[int] = set()
"""Programs held by agents these helpers started (others' agents may run meanwhile)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class AgentProc:
    proc: subprocess.Popen[bytes]
    port: int

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}",
                                        timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        _, body = self.get("/metrics")
        return [(s.name, dict(s.labels), s.value)
                for fam in text_string_to_metric_families(body.decode())
                for s in fam.samples]

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout * slow_factor()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode() if self.proc.stdout else ""
                raise AssertionError(f"agent exited with {self.proc.returncode}: {out}")
            with contextlib.suppress(OSError):
                if self.get("/readyz", timeout=1)[0] == 200:
                    return
            time.sleep(0.1)
        raise AssertionError("agent not ready in time")


def stop_agent(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def run_agent(*args: str, env: dict[str, str] | None = None) -> Iterator[AgentProc]:
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KPOD_")}
    full_env.update(env or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "kpodmetrics", "run", "--address", "127.0.0.1",
         "--port", str(port), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env,
    )
    agent = AgentProc(proc, port)
    tracker = Tracker(proc.pid)
    try:
        agent.wait_ready()
        yield agent
    finally:
        stop_agent(proc)
        _OWNED.update(tracker.stop())


def loaded_kpod_programs(settle: float = 3.0) -> list[str]:
    """Programs of the agents started by run_agent still loaded, after letting deferred
    frees (RCU) finish. Only their own: other agents on the machine are not ours."""
    return [f"prog id {i}" for i in still_loaded(set(_OWNED), settle)]

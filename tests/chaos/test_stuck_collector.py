"""A collector whose call never returns, in the real agent: the others keep their pace,
the overrun is counted once, /readyz names it after 3 intervals, the age gauge stays
small (cycles complete), and SIGTERM still ends the process within 10 s."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.bpf_owned import Tracker, still_loaded
from tests.chaos.chaos_util import cycles, value
from tests.conftest import require_root
from tests.e2e.agent_util import AgentProc, free_port

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]
INTERVAL = 1.0
# the agent with its pressure collector stuck in its second call, in a plain wait
_STUCK = r"""
import sys, threading
from kpodmetrics import cli
from kpodmetrics.collectors.files import pressure
real = pressure.PressureCollector.collect
calls = [0]
def collect(self, ctx):
    calls[0] += 1
    if calls[0] == 2:
        threading.Event().wait()  # forever
    return real(self, ctx)
pressure.PressureCollector.collect = collect
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_collector_stuck_forever() -> None:
    require_root()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", _STUCK, "run", "--mode", "standalone", "--address",
         "127.0.0.1", "--port", str(port), "--poll-interval", f"{INTERVAL:g}s"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    agent = AgentProc(proc, port)
    tracker = Tracker(proc.pid)
    try:
        agent.wait_ready()
        time.sleep(2 * INTERVAL)
        s = agent.samples()
        assert value(s, "kpod_collector_timeouts_total", collector="pressure") == 1
        c0, t0 = cycles(s), time.monotonic()
        time.sleep(4 * INTERVAL)
        s = agent.samples()
        c1, t1 = cycles(s), time.monotonic()
        assert c1 - c0 >= 0.7 * (t1 - t0) / INTERVAL
        assert value(s, "kpod_collector_timeouts_total", collector="pressure") == 1
        assert (value(s, "kpod_last_cycle_age_seconds") or 99) < 3 * INTERVAL
        code, body = agent.get("/readyz")
        assert code == 503 and b"collector pressure stuck for" in body, body
        code, page = agent.get("/")
        assert b"stuck for" in page
        t_term = time.monotonic()
        proc.terminate()
        rc = proc.wait(timeout=15)
        took = time.monotonic() - t_term
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ids = tracker.stop()
    log = proc.stdout.read().decode() if proc.stdout else ""
    assert took <= 10.0 and rc == 0, log[-2000:]
    assert "collector pressure overran" in log
    assert ids and still_loaded(ids) == []
    print(f"\nFIGURE stuck-collector: {c1 - c0:.0f} cycles in {t1 - t0:.1f}s with pressure "
          f"stuck, /readyz 503 naming it, SIGTERM->exit {took:.2f}s")

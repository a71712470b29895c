"""deploy/metric-names.txt is generated from the family registry and is not stale."""

from __future__ import annotations

import subprocess
import sys

from kpodmetrics import metricnames


def test_committed_list_is_what_the_generator_writes() -> None:
    run = subprocess.run([sys.executable, "-m", "kpodmetrics.metricnames", "--check"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_every_declared_family_is_listed_once_and_nothing_else() -> None:
    """Against the registry of a fresh process that imported every module of the agent
    (this one also holds the test suite's own families)."""
    code = ("from kpodmetrics import families, metricnames; metricnames.render(); "
            "print('\\n'.join(families.all_families()))")
    registered = set(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                    text=True, check=True).stdout.split())
    with open(metricnames.PATH) as fh:
        listed = [ln for ln in fh.read().splitlines() if ln and not ln.startswith("#")]
    assert len(listed) == len(set(listed))
    assert set(listed) == registered
    assert {"kpod_collector_state", "kpod_signal_info", "kpod_agent_up"} <= registered

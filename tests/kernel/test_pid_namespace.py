"""Collectors that find pods' processes through cgroup.procs refuse to run from another
pid namespace than their proc root, instead of seeing nothing or the wrong process.

The oracle is the kernel itself: from a child in a fresh pid namespace (as an agent in a
pod without hostPID is), cgroup.procs of a cgroup holding host processes reads as zeros.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import require_root
from tests.kernel.cgroup_util import PYTHON, make_cgroups, spawn_in

pytestmark = pytest.mark.kernel

CHILD = textwrap.dedent("""
    import json, os, sys
    from kpodmetrics.collectors.base import CollectorUnavailable
    from kpodmetrics.collectors.files import net_dev, volumes
    from kpodmetrics.collectors.files.support.targets import read_procs
    refused = {}
    for c in (net_dev.IfaceCollector(proc_root="/proc"), volumes.FsCollector(proc_root="/proc")):
        try:
            c.start()
            refused[c.name] = ""
        except CollectorUnavailable as exc:
            refused[c.name] = str(exc)
        c.close()
    print(json.dumps({"me": os.getpid(), "file": read_procs(sys.argv[1]), "refused": refused}))
""")


def test_collectors_needing_host_pids_refuse_a_foreign_pid_namespace() -> None:
    require_root()
    with make_cgroups("ctr") as [ctr]:
        procs = [spawn_in(ctr, [PYTHON, "-c", "import time; time.sleep(60)"]) for _ in range(2)]
        try:
            out = subprocess.run(["unshare", "--pid", "--fork", sys.executable, "-c", CHILD,
                                  ctr.path], capture_output=True, text=True, check=True,
                                 timeout=60).stdout
            got = json.loads(out.strip().splitlines()[-1])
            # and in our own (host) namespace they start
            from kpodmetrics.collectors.files import net_dev
            net_dev.IfaceCollector(proc_root="/proc").start()
        finally:
            for p in procs:
                p.kill()
                p.wait()
    assert got["me"] == 1  # really inside a new pid namespace
    assert got["file"] == [0, 0], got  # what cgroup.procs tells a namespaced reader
    assert set(got["refused"]) == {"iface", "fs"}
    for name, why in got["refused"].items():
        assert "another pid namespace" in why and "hostPID" in why, (name, why)

#!/usr/bin/env python3
"""Measure what each capability of the DaemonSet buys: run the image with all of them,
then with each one removed in turn, and record which collectors and families die.

    python deploy/capabilities.py --image localhost/kpod-metrics:e2e --write-doc

Every run starts the container exactly as the standard overlay does
(deploy/podman_run.py), standalone, next to a workload that needs each privilege:
- a busy cgroup (run-queue waits, cpu.stat, context switches);
- a process of another uid (65534) in its own mount namespace, with a tmpfs volume
  mounted below a directory only that uid may enter (0700): measuring it needs
  /proc/<pid>/root of a foreign process (ptrace access) and a path walk through a
  directory root cannot search without DAC_READ_SEARCH.
The table goes into docs/deploy.md between the capability markers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import podman_run

from kpodmetrics.pods import cgroupfs

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "deploy.md"
VOLUME_BYTES = 8 << 20
BEGIN, END = "<!-- capabilities:begin -->", "<!-- capabilities:end -->"


@contextlib.contextmanager
def workload(spinners: int = 1) -> Iterator[dict[str, str]]:
    """Start the busy and the foreign-volume workloads in kpod-test-caps-* cgroups:
    {"busy": path, "vol": path} (paths below the v2 root; the volume is VOLUME_BYTES)."""
    root = cgroupfs.detect_root(None)
    base = os.path.join(root, f"kpod-test-caps-{uuid.uuid4().hex[:8]}")
    busy, vol = os.path.join(base, "busy"), os.path.join(base, "vol")
    for d in (base, busy, vol):
        os.mkdir(d)
    private = tempfile.mkdtemp(prefix="kpod-caps-")
    mnt = os.path.join(private, "data")
    os.mkdir(mnt)
    os.chown(private, 65534, 65534)
    os.chmod(private, 0o700)
    procs: list[subprocess.Popen[bytes]] = []

    def into(cg: str) -> None:
        with open(os.path.join(cg, "cgroup.procs"), "w") as fh:
            fh.write(str(os.getpid()))

    try:
        procs += [subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                   preexec_fn=lambda: into(busy)) for _ in range(spinners)]
        script = (f"mount -t tmpfs -o size={VOLUME_BYTES} kpodcaps {mnt} && chown 65534:65534 {mnt} && "
                  "exec setpriv --reuid 65534 --regid 65534 --clear-groups sleep 3600")
        procs.append(subprocess.Popen(["unshare", "--mount", "--propagation", "private",
                                       "sh", "-c", script], preexec_fn=lambda: into(vol)))
        time.sleep(0.5)
        yield {"busy": "/" + os.path.relpath(busy, root), "vol": "/" + os.path.relpath(vol, root)}
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for d in (busy, vol, base):
            for _ in range(50):
                try:
                    os.rmdir(d)
                    break
                except OSError:
                    time.sleep(0.05)
        shutil.rmtree(private, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def observe(image: str, without: Sequence[str], cgroups: dict[str, str],
            seccomp: str | None = None) -> dict[str, object]:
    """One run: collectors up/down (with reasons), families seen for each workload."""
    port = free_port()
    name = f"kpod-test-caps-{os.getpid()}-{port}"
    with podman_run.running(image, name, port, without=without, seccomp=seccomp):
        samples: list[tuple[str, dict[str, str], float]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(1)
            with contextlib.suppress(OSError):
                samples = podman_run.scrape(port)
                cycles = sum(v for n, _, v in samples
                             if n == "kpod_collection_cycle_duration_seconds_count")
                if cycles >= 3:
                    break
        else:
            logs = podman_run.podman("logs", name, check=False).stdout[-2000:]
            raise SystemExit(f"agent without {without} never served 3 cycles:\n{logs}")
    up = {lab["collector"]: v for n, lab, v in samples if n == "kpod_collector_up"}
    reasons = {lab["collector"]: lab.get("reason", "") for n, lab, v in samples
               if n == "kpod_collector_status_info" and lab.get("reason")}
    seen = {key: sorted({_family(n) for n, lab, v in samples if lab.get("cgroup") == cg})
            for key, cg in cgroups.items()}
    return {"without": list(without), "seccomp": seccomp, "up": up, "reasons": reasons,
            "families": seen}


def _family(sample: str) -> str:
    return re.sub(r"_(bucket|count|sum)$", "", sample)


def table(runs: list[dict[str, object]], caps: Sequence[str]) -> str:
    full = runs[0]
    lines = ["| removed | collectors down | families lost (busy cgroup / foreign volume) |",
             "| --- | --- | --- |"]
    for run in runs:
        down = sorted(c for c, v in run["up"].items() if v != 1)  # type: ignore[union-attr]
        lost = []
        for key in ("busy", "vol"):
            had = set(full["families"][key])  # type: ignore[index]
            now = set(run["families"][key])  # type: ignore[index]
            lost.append(", ".join(sorted(had - now)) or "none")
        removed = ", ".join(run["without"]) or "nothing (all of " + ", ".join(caps) + ")"  # type: ignore[arg-type]
        if run.get("seccomp"):
            removed = f"nothing, but seccomp {run['seccomp']}"
        lines.append(f"| {removed} | {', '.join(down) or 'none'} | {lost[0]} / {lost[1]} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", default="localhost/kpod-metrics:e2e")
    ap.add_argument("--write-doc", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the raw observations here")
    ns = ap.parse_args(argv)
    spec = podman_run.agent_spec(podman_run.render("standard"), "podman-node")
    runs = []
    with workload() as cgroups:
        for without in [(), *((c,) for c in spec.capabilities)]:
            runs.append(observe(ns.image, without, cgroups))
            print(json.dumps(runs[-1]["up"]), "without", without or "nothing", file=sys.stderr)
        # the manifest sets seccomp Unconfined: show what the runtime default would cost
        runs.append(observe(ns.image, (), cgroups, seccomp="RuntimeDefault"))
    text = table(runs, spec.capabilities)
    print(text)
    if ns.json:
        ns.json.write_text(json.dumps(runs, indent=1))
    if ns.write_doc:
        doc = DOC.read_text()
        start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
        DOC.write_text(doc[:start] + "\n" + text + "\n" + doc[end:])
    return 0


if __name__ == "__main__":
    sys.exit(main())

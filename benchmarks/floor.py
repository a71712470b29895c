"""The C floor of a cycle's file reading, measured in the same run as the agent.

Issue 18 asks for the agent's CPU per collection cycle against what a C program that
opens, reads and closes exactly the files the agent opened in a cycle needs. The
files come from the running agent itself: `strace -f -y` on its threads records
every successful open while a whole number of cycles pass (the cycle boundaries are
the moments its own cycle counter moves, seen by scraping it every 20 ms). The list,
in order and with multiplicity, is replayed by benchmarks/helpers/filefloor.c, whose
CPU per round divided by the traced cycles is the floor per cycle. The agent's own
CPU per cycle comes from an untraced window (strace slows every traced call), so
ratio = agent CPU per cycle / floor per cycle, both from the same agent and tree.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks import procs

# `= 7</sys/fs/cgroup/.../memory.stat>` at the end of a successful open (strace -y)
_OPENED = re.compile(r"^\s*\d+\s+([\d.]+)\s.*\bopen(?:at)?\b.*=\s*\d+<(.+)>\s*$")


class FloorError(RuntimeError):
    pass


def parse_opens(text: str, start: float, end: float) -> list[str]:
    """Paths of the successful opens with an epoch stamp in [start, end), in order."""
    paths = []
    for line in text.splitlines():
        m = _OPENED.match(line)
        if m and start <= float(m.group(1)) < end:
            paths.append(m.group(2))
    return paths


def _cycle_edges(agent: procs.Agent, want: int, timeout: float) -> tuple[float, float, int]:
    """Epoch times of two cycle completions `want` cycles apart, and that count."""
    deadline = time.monotonic() + timeout

    def next_edge(after: float) -> tuple[float, float]:
        while time.monotonic() < deadline:
            n, _ = agent.cycles(agent.scrape())
            if n > after:
                return time.time(), n
            time.sleep(0.02)
        raise FloorError(f"no cycle completed within {timeout:.0f} s while traced")

    n0, _ = agent.cycles(agent.scrape())
    t_start, n_start = next_edge(n0)
    t_end, n_end = next_edge(n_start + want - 1)
    return t_start, t_end, int(n_end - n_start)


def trace(agent: procs.Agent, cycles: int = 3, timeout: float = 120.0) -> tuple[list[str], int]:
    """The files the agent opened over `cycles` whole cycles, and the cycle count."""
    exe = shutil.which("strace")
    if exe is None:
        raise FloorError("strace not on PATH (Debian package strace)")
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
        st = subprocess.Popen([exe, "-f", "-y", "-qq", "-ttt", "-e", "trace=open,openat",
                               "-e", "status=successful", "-p", str(agent.pid),
                               "-o", out.name], stderr=subprocess.PIPE)
        try:
            time.sleep(1.0)  # attached to every thread
            if st.poll() is not None:
                raise FloorError(f"strace exited: {st.stderr.read().decode()[-300:] if st.stderr else ''}")
            start, end, n = _cycle_edges(agent, cycles, timeout)
        finally:
            st.send_signal(signal.SIGINT)  # detach; the agent runs on
            st.wait(timeout=30)
        return parse_opens(Path(out.name).read_text(), start, end), n


def replay(binary: str, paths: list[str], rounds: int = 5) -> dict[str, float]:
    """The C helper over `paths` `rounds` times: median CPU seconds per round."""
    with tempfile.NamedTemporaryFile("w", suffix=".list", delete=False) as fh:
        for p in paths:
            fh.write(f"{'d' if os.path.isdir(p) else 'f'} {p}\n")
    try:
        r = subprocess.run([binary, fh.name, str(rounds)], capture_output=True, text=True,
                           timeout=600)
    finally:
        os.unlink(fh.name)
    if r.returncode != 0:
        raise FloorError(f"filefloor failed ({r.returncode}): {r.stderr.strip()[-300:]}")
    per_round = [float(x) for x in re.findall(r"round_cpu_s ([\d.]+)", r.stdout)]
    missing = re.search(r"missing (\d+)", r.stdout)
    return {"round_cpu_s": statistics.median(per_round),
            "missing": float(missing.group(1)) if missing else 0.0}


def measure(agent: procs.Agent, binary: str, agent_cpu_per_cycle: float | None,
            cycles: int = 3) -> dict[str, object]:
    """Floor per cycle for this agent and the ratio of its untraced CPU per cycle to it."""
    try:
        paths, n = trace(agent, cycles)
        if not paths or n <= 0:
            raise FloorError("the traced window saw no opens")
        rep = replay(binary, paths)
    except (FloorError, OSError, subprocess.SubprocessError) as exc:
        return {"error": str(exc)}
    floor = rep["round_cpu_s"] / n
    kinds: dict[str, int] = {}
    for p in paths:
        k = os.path.basename(p) if p.startswith("/sys/fs/cgroup") else p.split("/")[1]
        kinds[k] = kinds.get(k, 0) + 1
    return {
        "traced_cycles": n,
        "opens_per_cycle": len(paths) / n,
        "opens_by_name": dict(sorted(kinds.items(), key=lambda kv: -kv[1])[:20]),
        "floor_cpu_per_cycle_s": floor,
        "replay_missing": rep["missing"],
        "ratio": (agent_cpu_per_cycle / floor) if agent_cpu_per_cycle and floor else None,
        **({} if agent_cpu_per_cycle and floor else {"no_ratio": (
            "the agent's CPU per cycle was below the clock tick of /proc/<pid>/stat"
            if not agent_cpu_per_cycle else "the replay's CPU time was 0")}),
    }

"""BPF programs owned by one process, from its fds (bpftool cannot list owner pids here).

Other agents (other tests, other helpers on a shared machine) load programs with the
same names at the same time, so "no kpod program is loaded" must be asked only about
the programs a given process held: their ids are read from /proc/<pid>/fdinfo (a
program fd shows `prog_id:`, a link fd shows the `prog_id:` of its program).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time


def _fdinfo_ids(pid: int, field: str) -> set[int]:
    """Values of `field:` (prog_id, map_id) over the process's fdinfo files, now."""
    out: set[int] = set()
    base = f"/proc/{pid}/fdinfo"
    try:
        fds = os.listdir(base)
    except OSError:
        return out
    for fd in fds:
        try:
            with open(os.path.join(base, fd)) as fh:
                text = fh.read()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith(f"{field}:"):
                out.add(int(line.split()[1]))
    return out


def prog_ids(pid: int) -> set[int]:
    """Ids of the BPF programs the process holds through program or link fds now."""
    return _fdinfo_ids(pid, "prog_id")


def map_names(pid: int) -> set[str]:
    """Names of the BPF maps the process holds fds of, as the kernel lists them (ids
    from /proc/<pid>/fdinfo `map_id:`, names from `bpftool map show`)."""
    import json

    ids = _fdinfo_ids(pid, "map_id")
    out = subprocess.run(["bpftool", "-j", "map", "show"], capture_output=True, text=True,
                         check=True).stdout
    return {m.get("name", "") for m in json.loads(out) if m.get("id") in ids}


def prog_stats(fd: int) -> tuple[int, int]:
    """(run_time_ns, run_cnt) of a program fd of this process, read from its fdinfo by
    the agent's own reader (kernel tests measure program cost with it)."""
    from kpodmetrics.bpf.stats import read_program_stats

    got = read_program_stats(fd)
    assert got is not None, f"fdinfo of fd {fd} has no run_time_ns/run_cnt (not a program?)"
    return got


def still_loaded(ids: set[int], settle: float = 3.0) -> list[int]:
    """Of `ids`, the programs still loaded after letting deferred frees (RCU) finish."""
    deadline = time.monotonic() + settle
    while True:
        left = [i for i in sorted(ids) if subprocess.run(
            ["bpftool", "prog", "show", "id", str(i)], capture_output=True).returncode == 0]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


class Tracker:
    """Polls a running process and remembers every program id it ever held."""

    def __init__(self, pid: int, period: float = 0.1) -> None:
        self.pid = pid
        self.ids: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period,), daemon=True)
        self._thread.start()

    def _run(self, period: float) -> None:
        while not self._stop.is_set() and os.path.exists(f"/proc/{self.pid}"):
            self.ids |= prog_ids(self.pid)
            self._stop.wait(period)

    def stop(self) -> set[int]:
        self._stop.set()
        self._thread.join(5)
        return self.ids

"""What BPF objects a process holds, their run statistics and memory.

Attribution goes through /proc/<pid>/fdinfo (every BPF prog, map and link fd names its
kernel id there), not through "new ids since start": other tests may load programs on
the same machine while the benchmark runs, and this bpftool has no pid column.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProcBpf:
    """BPF ids held by one process (programs via prog or link fds)."""

    prog_ids: frozenset[int]
    map_ids: frozenset[int]


def parse_fdinfo(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, val = line.partition(":")
        if sep:
            out[key.strip()] = val.strip()
    return out


def held_by(pid: int) -> ProcBpf:
    """Program and map ids that `pid` holds open (empty if it is gone)."""
    progs: set[int] = set()
    maps: set[int] = set()
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return ProcBpf(frozenset(), frozenset())
    for fd in fds:
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
            if "bpf" not in target:
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as fh:
                info = parse_fdinfo(fh.read())
        except OSError:
            continue
        if "prog_id" in info:
            progs.add(int(info["prog_id"]))
        if "map_id" in info:
            maps.add(int(info["map_id"]))
    return ProcBpf(frozenset(progs), frozenset(maps))


def _bpftool(*args: str) -> list[dict[str, object]]:
    out = subprocess.run(["bpftool", *args, "-j"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0 or not out.stdout.strip():
        return []
    data = json.loads(out.stdout)
    return data if isinstance(data, list) else [data]


def programs() -> dict[int, dict[str, object]]:
    """Every loaded program by id (bpftool prog show)."""
    return {int(p["id"]): p for p in _bpftool("prog", "show")}  # type: ignore[call-overload]


def maps() -> dict[int, dict[str, object]]:
    """Every map by id, with bytes_memlock (bpftool map show)."""
    return {int(m["id"]): m for m in _bpftool("map", "show")}  # type: ignore[call-overload]


def _stats_sysctl() -> str:
    with open("/proc/sys/kernel/bpf_stats_enabled") as fh:
        return fh.read().strip()


@contextlib.contextmanager
def stats_enabled() -> Iterator[str]:
    """Run-time statistics on for the block only.

    Preferred: BPF_ENABLE_STATS, which keeps them on while we hold the fd and turns them
    off by itself if this process dies. Fallback: the sysctl, restored in `finally`.
    Yields how they were enabled.
    """
    fd = -1
    try:
        from kpodmetrics.bpf import libbpf

        fd = int(libbpf.lib().bpf_enable_stats(0))  # BPF_STATS_RUN_TIME
    except Exception:
        fd = -1
    if fd >= 0:
        try:
            yield "BPF_ENABLE_STATS"
        finally:
            os.close(fd)
        return
    before = _stats_sysctl()
    with open("/proc/sys/kernel/bpf_stats_enabled", "w") as fh:
        fh.write("1")
    try:
        yield "sysctl"
    finally:
        with open("/proc/sys/kernel/bpf_stats_enabled", "w") as fh:
            fh.write(before)


def stats_sysctl_value() -> str:
    return _stats_sysctl()

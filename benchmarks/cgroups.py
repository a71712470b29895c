"""Benchmark cgroups: real, empty cgroup v2 directories, always removed.

They live under <unified root>/kpod-test-bench-<random>/ so the agent's tree walk,
the per-cgroup file collectors and the resolver see real directories with real
inode ids. Removal runs in a `finally`; any task that wandered in is killed first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from kpodmetrics.pods import cgroupfs


@dataclass(frozen=True, slots=True)
class BenchCgroups:
    base: str
    ids: list[int]


def _kill_tasks(path: str) -> None:
    try:
        with open(os.path.join(path, "cgroup.procs")) as fh:
            pids = [int(x) for x in fh.read().split()]
    except OSError:
        return
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def remove(base: str) -> None:
    """rmdir bottom-up; retry briefly while killed tasks exit."""
    if not os.path.isdir(base):
        return
    for dirpath, _d, _f in sorted(os.walk(base), key=lambda t: -t[0].count("/")):
        _kill_tasks(dirpath)
        for _ in range(100):
            try:
                os.rmdir(dirpath)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)


@contextlib.contextmanager
def created(n: int, root: str | None = None) -> Iterator[BenchCgroups]:
    """`n` leaf cgroups, ten per parent directory (a pod with its containers)."""
    root = root or cgroupfs.detect_root(None)
    base = os.path.join(root, f"kpod-test-bench-{uuid.uuid4().hex[:8]}")
    os.mkdir(base)
    ids: list[int] = []
    try:
        for i in range(n):
            parent = os.path.join(base, f"pod{i // 10:04d}")
            if i % 10 == 0:
                os.mkdir(parent)
                ids.append(os.stat(parent).st_ino)
                if len(ids) >= n:
                    break
            leaf = os.path.join(parent, f"c{i % 10}")
            os.mkdir(leaf)
            ids.append(os.stat(leaf).st_ino)
            if len(ids) >= n:
                break
        yield BenchCgroups(base, ids)
    finally:
        remove(base)


def leftovers(root: str | None = None) -> list[str]:
    root = root or cgroupfs.detect_root(None)
    try:
        return sorted(d for d in os.listdir(root) if d.startswith("kpod-test-bench-"))
    except OSError:
        return []

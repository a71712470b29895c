"""statvfs of pod volumes, each call within a deadline; mounts that hang are remembered.

A filesystem whose server is gone (NFS, a FUSE daemon that stopped answering) makes
statvfs, and even stat of its mountpoint, wait in the kernel for as long as the server
stays away; nothing in Python can interrupt that. So each measurement runs on a worker
thread of its own (`lanes.Lane`) and is waited for at most `deadline`. A call that
overruns keeps its thread; its device is remembered as stuck and skipped (no thread is
spent on it again) until that very call returns. Both moments are logged once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from kpodmetrics.lanes import Job, Lane

_log = logging.getLogger(__name__)
Dev = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Reading:
    st_dev: int
    """st_dev of the path before statvfs (its device must be the one expected)."""
    vfs: os.statvfs_result
    after_dev: int
    """st_dev after statvfs: a different one means the path was swapped meanwhile."""


@dataclass(slots=True)
class StuckMount:
    dev: Dev
    mountpoint: str
    path: str
    since: float
    job: Job[Any]


class Stuck(Exception):
    """This mount's statvfs has not returned (now or since an earlier cycle)."""


def _read(path: str) -> Reading:
    st = os.stat(path)
    vfs = os.statvfs(path)
    after = os.stat(path)
    return Reading(st.st_dev, vfs, after.st_dev)


class MountProber:
    """Measures mounts through one worker thread, replaced whenever a call hangs."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self._lane: Lane | None = None
        self._lock = threading.Lock()
        self._stuck: dict[Dev, StuckMount] = {}

    def stuck(self) -> dict[Dev, StuckMount]:
        with self._lock:
            return dict(self._stuck)

    def is_stuck(self, dev: Dev) -> bool:
        with self._lock:
            return dev in self._stuck

    def measure(self, path: str, dev: Dev, mountpoint: str) -> Reading:
        """stat, statvfs, stat of `path`; raises OSError like they do, or Stuck."""
        if self.is_stuck(dev):
            raise Stuck(mountpoint)
        if self._lane is None:
            self._lane = Lane("kpod-statvfs")
        job = self._lane.submit(lambda: _read(path), f"statvfs {mountpoint}")
        if not job.wait(self.deadline):
            self._lane.abandon()  # the call keeps this thread; the next one gets another
            self._lane = None
            self._remember(StuckMount(dev, mountpoint, path, time.monotonic(), job))
            raise Stuck(mountpoint)
        return job.result()

    def _remember(self, mount: StuckMount) -> None:
        with self._lock:
            self._stuck[mount.dev] = mount
        _log.warning("statvfs of %s (device %d:%d, via %s) has not returned after %.3gs: "
                     "skipping this filesystem until it does", mount.mountpoint, *mount.dev,
                     mount.path, self.deadline)
        mount.job.add_done_callback(lambda _: self._forget(mount))

    def _forget(self, mount: StuckMount) -> None:
        with self._lock:
            if self._stuck.get(mount.dev) is mount:
                del self._stuck[mount.dev]
        _log.warning("statvfs of %s (device %d:%d) returned after %.1fs: measuring it again",
                     mount.mountpoint, *mount.dev, mount.job.running_for())

    def close(self) -> None:
        if self._lane is not None:
            self._lane.abandon()
            self._lane = None

"""Block device names for io.stat's `MAJ:MIN` keys.

`/sys/dev/block/MAJ:MIN` is a symlink to the device's sysfs directory; its `uevent`
names the device node (`DEVNAME=nvme0n1`, `DEVNAME=mapper/...` is not used: dm devices
report `dm-0`). When sysfs does not know the number (device gone, /sys not mounted
in the agent's container) the label falls back to the number itself, so a reading is
never lost for want of a name.
"""

from __future__ import annotations

import os

from kpodmetrics.collectors.files.support.files import read_bounded
from kpodmetrics.collectors.files.support.formats import lines_of

_REFRESH_EVERY = 64
_RETRY_UNKNOWN_EVERY = 4
"""Cycles before a number sysfs did not know is looked up again: a disk that appears
gets its name within a few cycles, and a number that stays unknown (gone, or no /sys
in the container) costs no failed open and readlink per entry and cycle."""


def _valid_name(name: str) -> bool:
    return 0 < len(name) <= 64 and name.isprintable() and not any(c.isspace() for c in name)


class BlockDevices:
    """Resolves and caches device names; the cache is dropped every few cycles because
    numbers are reused when devices are hot-unplugged and replugged."""

    def __init__(self, sys_root: str = "/sys") -> None:
        self.sys_root = sys_root
        self._cache: dict[str, str] = {}
        self._unknown: dict[str, int] = {}
        """devno -> the cycle of its last failed lookup"""
        self._cycles = 0

    def new_cycle(self) -> None:
        self._cycles += 1
        if self._cycles % _REFRESH_EVERY == 0:
            self._cache.clear()
            self._unknown.clear()

    def name(self, devno: str) -> str:
        cached = self._cache.get(devno)
        if cached is not None:
            return cached
        failed_at = self._unknown.get(devno)
        if failed_at is not None and self._cycles - failed_at < _RETRY_UNKNOWN_EVERY:
            return devno
        name = self._lookup(devno)
        if name is None:
            self._unknown[devno] = self._cycles  # the device may appear in sysfs later
            return devno
        self._unknown.pop(devno, None)
        self._cache[devno] = name
        return name

    def _lookup(self, devno: str) -> str | None:
        base = os.path.join(self.sys_root, "dev", "block", devno)
        try:
            for line in lines_of(read_bounded(os.path.join(base, "uevent"), 8192)):
                key, sep, value = line.partition("=")
                if sep and key == "DEVNAME" and _valid_name(value.strip()):
                    return value.strip()
        except OSError:
            pass
        try:
            link = os.path.basename(os.readlink(base))
        except OSError:
            return None
        return link if _valid_name(link) else None

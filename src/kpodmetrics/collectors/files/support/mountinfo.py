"""Parser for `/proc/<pid>/mountinfo` (Documentation/filesystems/proc.rst, 3.5).

`36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`:
mount id, parent id, major:minor, root, mount point, options, optional fields ended
by a lone `-`, then fs type, source, super options. Paths escape space, tab, newline
and backslash as `\\ooo` octal, so a line is always one mount.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kpodmetrics.collectors.files.support.formats import lines_of, split_devno

_OCTAL = re.compile(r"\\([0-7]{3})")


def unescape(text: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), text)


@dataclass(frozen=True, slots=True)
class Mount:
    mount_id: int
    parent_id: int
    major: int
    minor: int
    root: str
    mountpoint: str
    fstype: str
    source: str

    @property
    def dev(self) -> tuple[int, int]:
        return self.major, self.minor


@dataclass(slots=True)
class MountInfo:
    mounts: list[Mount] = field(default_factory=list)
    malformed: int = 0


def parse_mountinfo(data: bytes) -> MountInfo:
    out = MountInfo()
    for line in lines_of(data):
        parts = line.split(" ")
        try:
            sep = parts.index("-", 6)
        except ValueError:
            out.malformed += 1
            continue
        dev = split_devno(parts[2]) if len(parts) > 2 else None
        if (
            sep + 2 >= len(parts)
            or dev is None
            or not parts[0].isdecimal()
            or not parts[1].isdecimal()
            or not parts[0].isascii()
            or not parts[1].isascii()
            or not parts[4].startswith("/")
        ):
            out.malformed += 1
            continue
        out.mounts.append(
            Mount(
                mount_id=int(parts[0]),
                parent_id=int(parts[1]),
                major=dev[0],
                minor=dev[1],
                root=unescape(parts[3]),
                mountpoint=unescape(parts[4]),
                fstype=parts[sep + 1],
                source=unescape(parts[sep + 2]),
            )
        )
    return out


def _self_and_ancestors(path: str) -> list[str]:
    """"/a/b" -> ["/a/b", "/a", "/"]."""
    out = [path]
    while path != "/":
        path = path.rsplit("/", 1)[0] or "/"
        out.append(path)
    return out


def visible_mounts(mounts: list[Mount]) -> list[Mount]:
    """The mounts a path lookup in this namespace can reach, in table order.

    A mount is hidden when one listed after it (the table is in attachment order) sits
    at its mount point or above it, unless that one is among its own parents (a
    propagated mount tucked beneath it). Seen in the matrix VMs: ext4 mounted over a
    tmpfs at /var/tmp, an overlay at /usr over one at /usr/lib; a statvfs through the
    path measures the mount on top, never the hidden one, which no process of the
    namespace can use either. Linear in the table (times path depth).
    """
    by_id = {m.mount_id: m for m in mounts}
    later: dict[str, list[int]] = {}  # mount point -> ids of mounts listed after
    hidden: set[int] = set()
    for i in range(len(mounts) - 1, -1, -1):
        m = mounts[i]
        above = [mid for path in _self_and_ancestors(m.mountpoint.rstrip("/") or "/")
                 for mid in later.get(path, ())]
        if above:
            parents: set[int] = set()
            p = by_id.get(m.parent_id)
            while p is not None and p.mount_id not in parents:
                parents.add(p.mount_id)
                p = by_id.get(p.parent_id)
            if any(mid not in parents for mid in above):
                hidden.add(i)
        later.setdefault(m.mountpoint.rstrip("/") or "/", []).append(m.mount_id)
    return [m for i, m in enumerate(mounts) if i not in hidden]

"""Reading cgroup and /proc files with the three outcomes the collectors need.

- the file is there: its bytes (bounded, so a hostile or runaway file cannot eat memory);
- the file is absent while its directory exists, or the kernel refuses the read as
  unsupported (PSI switched off at boot or per cgroup): `None`, "not available", no error;
- anything else (the cgroup or pid vanished, permission denied, I/O error): an OSError
  the caller counts as a read error for this cycle and skips.
"""

from __future__ import annotations

import errno
import os

DEFAULT_LIMIT = 1 << 20
_UNSUPPORTED = frozenset({errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENODEV})


class Vanished(OSError):
    """The directory (cgroup or /proc/<pid>) is gone: skip the rest of it this cycle."""


CGROUP_RECORD_MAX = 4096
"""Longest record a cgroup interface file's read returns: kernfs prints most files as
one record (shown whole, its buffer grown to fit) and the rest a short line per
record (cgroup.procs: a pid a line)."""
_CHUNK = 65536


def read_bounded(path: str, limit: int = DEFAULT_LIMIT, record_max: int | None = None) -> bytes:
    """Read at most `limit` bytes; raises OSError like open/read do.

    Plain os.open/os.read: thousands of small files a cycle, and the buffered file
    object costs more than the read itself (measured ~3x per file here).

    `record_max`: the file is a kernel seq file whose records are at most that long.
    A seq file's read fills the buffer with whole records and stops short only at the
    end or when the next record does not fit, so a read that comes back more than
    `record_max` short of what was asked is the end: no second read to see EOF (half
    the read calls of a cycle's cgroup files)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        left = limit
        while left > 0:
            want = min(left, _CHUNK)
            chunk = os.read(fd, want)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
            if record_max is not None and len(chunk) < want - record_max:
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        os.close(fd)


def read_optional(dirpath: str, name: str, limit: int = DEFAULT_LIMIT,
                  dir_exists: bool = False) -> bytes | None:
    """A cgroup interface file, or None when this kernel/cgroup does not provide it.
    `dir_exists`: the caller saw the directory this cycle (another of its files was
    read), so a missing file is just missing, no stat to tell it from a gone cgroup."""
    path = os.path.join(dirpath, name)
    try:
        return read_bounded(path, limit, CGROUP_RECORD_MAX)
    except FileNotFoundError:
        if not dir_exists and not os.path.isdir(dirpath):
            raise Vanished(errno.ENOENT, "cgroup vanished", dirpath) from None
        return None
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            return None
        raise

"""The cgroup v2 tree: find its root and walk it (directory inode = cgroup id)."""

from __future__ import annotations

import os
from collections.abc import Iterator

CGROUP2_SUPER_MAGIC = 0x63677270
DEFAULT_CANDIDATES = ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")


class CgroupRootNotFound(RuntimeError):
    pass


def is_cgroup2(path: str) -> bool:
    """True when `path` is the root of a mounted cgroup2 hierarchy (or a copy with its files)."""
    if not os.path.isdir(path):
        return False
    # cgroup2 roots have cgroup.controllers; tmpfs parents of hybrid hosts do not
    return os.path.exists(os.path.join(path, "cgroup.controllers")) or _statfs_is_cgroup2(path)


def _statfs_is_cgroup2(path: str) -> bool:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            for line in fh:
                parts = line.split(" - ", 1)
                if len(parts) == 2 and parts[1].startswith("cgroup2 "):
                    mnt = parts[0].split()[4]
                    if os.path.realpath(mnt) == os.path.realpath(path):
                        return True
    except OSError:
        return False
    return False


def detect_root(override: str | None = None) -> str:
    """The cgroup v2 root: the override, else /sys/fs/cgroup when it is cgroup2, else
    /sys/fs/cgroup/unified (hybrid hosts)."""
    if override:
        if not os.path.isdir(override):
            raise CgroupRootNotFound(
                f"cgroup root {override!r} does not exist: set --cgroup-root / KPOD_CGROUP_ROOT "
                "to the cgroup v2 mount (e.g. /sys/fs/cgroup, or /host/sys/fs/cgroup in a pod)"
            )
        # a hybrid host's /sys/fs/cgroup mounted into a pod: its v2 tree is unified/
        unified = os.path.join(override, "unified")
        if not is_cgroup2(override) and is_cgroup2(unified):
            return unified
        return override
    for cand in DEFAULT_CANDIDATES:
        if is_cgroup2(cand):
            return cand
    raise CgroupRootNotFound(
        "no cgroup v2 hierarchy found at /sys/fs/cgroup or /sys/fs/cgroup/unified: mount one "
        "(mount -t cgroup2 none /sys/fs/cgroup/unified) or set --cgroup-root"
    )


def cgroup_id(path: str) -> int:
    """The cgroup id BPF sees (`kn->id`) is the directory's inode number."""
    return os.stat(path).st_ino


LEAF_NLINK = 2
"""kernfs gives a directory `2 + number of subdirectories` links (kernfs_refresh_inode,
since kernfs began in 3.14), as most Unix file systems do: a cgroup whose directory has
2 links has no child cgroups."""


def walk(root: str) -> Iterator[tuple[str, int]]:
    """Yield (path relative to root starting with '/', cgroup id) for every cgroup.

    Directories that vanish during the walk are skipped (cgroups come and go). A
    child's id is its directory entry's inode number (kernfs lists each node with the
    inode number its stat reports). Paths are joined as strings, not through
    os.path.relpath (at 1,000 cgroups a stat and relpath per directory were 5 % of the
    agent's CPU).

    A cgroup directory lists every interface file of the cgroup (20 to 80 of them), so
    listing one only to learn it has no subdirectory cost more than the rest of the
    walk: each child's link count (one lstat of its entry) says whether it has
    subdirectories (LEAF_NLINK), and leaves are not listed. A count that does not look
    like a leaf's (any other number, or a file system that does not count links)
    gets the listing."""
    try:
        top = os.stat(root)
    except OSError:
        return
    base = root.rstrip("/") or "/"
    stack: list[tuple[str, str, int, int]] = [(base, "/", top.st_ino, top.st_nlink)]
    while stack:
        d, rel, ino, nlink = stack.pop()
        if nlink == LEAF_NLINK:
            yield rel, ino
            continue
        try:
            with os.scandir(d) as it:
                entries = []
                for e in it:
                    if e.is_dir(follow_symlinks=False):
                        try:
                            links = e.stat(follow_symlinks=False).st_nlink
                        except OSError:
                            continue  # gone since the listing
                        entries.append((e.name, e.inode(), links))
        except OSError:
            continue
        yield rel, ino
        prefix = "/" if rel == "/" else rel + "/"
        for name, child, links in entries:
            stack.append((os.path.join(d, name), prefix + name, child, links))

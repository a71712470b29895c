"""Finding a live process of a pod and the namespaces it lives in.

Network and mount namespaces are reached through a process: `/proc/<pid>/ns/*`
(stat gives the namespace inode, its identity) and `/proc/<pid>/net/dev`,
`/proc/<pid>/mountinfo`, `/proc/<pid>/root`. Processes exit at any time, so each
attempt may fail; callers try a few pids and count the failures.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from kpodmetrics.collectors.base import CollectContext, CollectorUnavailable
from kpodmetrics.collectors.files.support.targets import (
    MAX_PIDS_TRIED,
    PodGroup,
    candidate_dirs,
    read_procs_memo,
)


def ns_inode(proc_root: str, pid: int | str, ns: str) -> int:
    """Inode of the `ns` namespace ("net", "mnt") of a process; raises OSError."""
    return os.stat(os.path.join(proc_root, str(pid), "ns", ns)).st_ino


def pids_by_dir(
    group: PodGroup, known_paths: set[str], ctx: CollectContext, collector: str
) -> Iterator[tuple[str, list[int]]]:
    """(cgroup dir, up to MAX_PIDS_TRIED of its pids) for each dir that has processes.
    An unreadable or vanished cgroup.procs is counted and skipped. The pids are those
    of this process's pid namespace, which collectors using them must share with the
    proc root (`require_host_pid_namespace`). Listings and cgroup.procs come through
    the cycle's memo: the second collector of a cycle reads neither again."""
    for d in candidate_dirs(group, known_paths, ctx.memo):
        try:
            pids = read_procs_memo(d, ctx.memo)
        except OSError:
            ctx.count_error(collector)
            continue
        if pids:
            yield d, pids[:MAX_PIDS_TRIED]


def foreign_pid_namespace(proc_root: str) -> bool:
    """True when the proc root belongs to another pid namespace than this process
    (its `self` link names us by another number)."""
    try:
        return os.readlink(os.path.join(proc_root, "self")) != str(os.getpid())
    except OSError:
        return False


def require_host_pid_namespace(proc_root: str) -> None:
    """Refuse to start a collector that finds pods' processes through cgroup.procs
    when this process is in another pid namespace than the proc root.

    cgroup.procs prints pids as the *reader's* pid namespace knows them: from a pod
    without hostPID the host's processes read as 0 and our own as numbers that name
    other processes under the proc root. Such a collector could only see nothing or
    the wrong process, so it is reported down with the remedy instead."""
    if foreign_pid_namespace(proc_root):
        raise CollectorUnavailable(
            f"this agent runs in another pid namespace than {proc_root}: cgroup.procs "
            "names the host's processes as 0, so pods' processes cannot be found "
            "(run in the host pid namespace: hostPID: true, as the DaemonSet does)")


def host_pid(setting: str, proc_root: str) -> int:
    """The pid whose network and mount namespaces are the host's.

    `auto`: pid 1 of the proc root when its namespace links are readable (a DaemonSet
    with /host/proc and CAP_SYS_PTRACE, a plain host); otherwise, when the proc root is
    this process's own /proc (standalone on a host whose pid 1 is hidden, e.g. inside a
    sandbox), this process: standalone agents run in the host's namespaces.
    """
    if setting == "self":
        return os.getpid()
    if setting.isdigit():
        return int(setting)
    try:
        ns_inode(proc_root, 1, "net")
        ns_inode(proc_root, 1, "mnt")
        return 1
    except OSError:
        if os.path.realpath(proc_root) == "/proc":
            return os.getpid()
        return 1

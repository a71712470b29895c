"""Filesystem capacity and usage of pod volumes, from mountinfo + statvfs.

For each pod, the mount table of each distinct mount namespace among its containers
(`/proc/<pid>/mountinfo`) is read and the pod's own filesystems are kept; each is
measured once per pod with statvfs through `/proc/<pid>/root/<mountpoint>`.

What counts as a pod volume:
- never pseudo filesystems (proc, sysfs, cgroup, devpts, mqueue, ...) nor anything
  mounted at or below /proc, /sys or /dev, nor the container root "/" (its overlay
  reports the node disk), nor the runtime's bind mounts /etc/hosts, /etc/hostname,
  /etc/resolv.conf, /dev/termination-log;
- Kubernetes: not on a node-wide device, i.e. the device holding, on the host, "/",
  the kubelet and container runtime directories, /var/log or /run. Disk-backed
  emptyDir volumes live on that device and are therefore not reported separately;
  PVCs, memory-backed emptyDir, projected and other tmpfs volumes are;
- standalone: not a device the host's own mount namespace (`<proc_root>/1`) has.

The host is `<proc_root>/1` unless another `host_pid` is given. If its namespace
cannot be read nothing is reported and one error is counted per cycle: without it
every node disk could pass for a pod volume.

Only mounts a process of the pod can reach count (support/mountinfo.visible_mounts: a
mount hidden by a later one at or above its mount point is skipped; a device seen only
there is not reported). A device (major:minor) is reported once per pod under its
smallest visible mountpoint, and
the statvfs result is used only when the path still is that device (a container
could swap a parent directory for a symlink; we never report a host path by mistake).

A filesystem whose statvfs does not return (dead NFS server, hung FUSE daemon) holds
only a child process of its own (support/stuckmounts.py): after `stat_deadline` the device
is skipped until that call returns, `kpod_fs_stuck_mounts` counts it for each pod
that has it, and every other volume and pod is measured as usual.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kpodmetrics import families
from kpodmetrics.collectors.base import CollectContext
from kpodmetrics.collectors.files.support.collector import FileCollector
from kpodmetrics.collectors.files.support.files import read_bounded
from kpodmetrics.collectors.files.support.mountinfo import (
    Mount,
    parse_mountinfo,
    visible_mounts,
)
from kpodmetrics.collectors.files.support.procs import (
    host_pid,
    ns_inode,
    pids_by_dir,
    require_host_pid_namespace,
)
from kpodmetrics.collectors.files.support.stuckmounts import MountProber, Stuck
from kpodmetrics.collectors.files.support.targets import PodGroup, pod_groups_memo
from kpodmetrics.config import Settings
from kpodmetrics.families import Family, FamilyType
from kpodmetrics.pods.owner import CgroupRef
from kpodmetrics.samples import HistogramSample, Kind, Sample

NAME = "fs"
MOUNTINFO_LIMIT = 16 << 20
PSEUDO_FS = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "securityfs",
    "debugfs", "tracefs", "bpf", "pstore", "configfs", "fusectl", "hugetlbfs", "autofs",
    "binfmt_misc", "nsfs", "rpc_pipefs", "selinuxfs", "efivarfs",
})
EXCLUDED_MOUNTPOINTS = frozenset({
    "/", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev/termination-log",
})
PSEUDO_TREES = ("/proc", "/sys", "/dev")
NODE_PATHS = (
    "/", "/var/lib/kubelet", "/var/lib/containerd", "/var/lib/docker", "/var/lib/containers",
    "/var/log", "/run", "/var/run",
)

CAPACITY = Family("kpod_fs_capacity_bytes", FamilyType.GAUGE,
                  "Size of the pod volume's filesystem (statvfs f_blocks * f_frsize).", "By",
                  ("mountpoint",))
USAGE = Family("kpod_fs_usage_bytes", FamilyType.GAUGE,
               "Used space of the pod volume's filesystem ((f_blocks - f_bfree) * f_frsize).",
               "By", ("mountpoint",))
AVAILABLE = Family("kpod_fs_available_bytes", FamilyType.GAUGE,
                   "Space available to unprivileged users (f_bavail * f_frsize).", "By",
                   ("mountpoint",))
INODES = Family("kpod_fs_inodes", FamilyType.GAUGE,
                "Inodes of the pod volume's filesystem (statvfs f_files).", "", ("mountpoint",))
INODES_FREE = Family("kpod_fs_inodes_free", FamilyType.GAUGE,
                     "Free inodes of the pod volume's filesystem (statvfs f_ffree).", "",
                     ("mountpoint",))
STUCK = Family("kpod_fs_stuck_mounts", FamilyType.GAUGE,
               "Volumes of the pod whose statvfs has not returned within its deadline; they "
               "are skipped (no kpod_fs_* series) until the call returns", "")
FAMILIES = families.register(CAPACITY, USAGE, AVAILABLE, INODES, INODES_FREE, STUCK)
STAT_DEADLINE_MAX = 1.0
"""Seconds one statvfs may take before its mount counts as stuck (capped by half the
collector's own deadline, so a stuck mount never makes the collector overrun)."""


def _under(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree.rstrip("/") + "/")


def node_wide_devices(host_mounts: Sequence[Mount]) -> set[tuple[int, int]]:
    """Devices that hold the node's own directories (the innermost mount of each)."""
    out: set[tuple[int, int]] = set()
    for path in NODE_PATHS:
        best: Mount | None = None
        for m in host_mounts:
            if _under(path, m.mountpoint) and (
                best is None or len(m.mountpoint) >= len(best.mountpoint)
            ):
                best = m
        if best is not None:
            out.add(best.dev)
    return out


def is_kubernetes(ref: CgroupRef) -> bool:
    return any(name == "pod" for name, _ in ref.owner.labels)


def is_pod_volume(m: Mount, excluded_devices: set[tuple[int, int]]) -> bool:
    if m.fstype in PSEUDO_FS or m.mountpoint in EXCLUDED_MOUNTPOINTS:
        return False
    if any(_under(m.mountpoint, tree) for tree in PSEUDO_TREES):
        return False
    return m.dev not in excluded_devices


@dataclass(slots=True)
class _Host:
    mnt_ns: int
    node_wide: set[tuple[int, int]]
    all_devices: set[tuple[int, int]]


class FsCollector(FileCollector):
    name = NAME
    families = FAMILIES

    def __init__(self, host_pid: int = 1, stat_deadline: float = STAT_DEADLINE_MAX,
                 proc_root: str = "/proc") -> None:
        self.host_pid = host_pid
        """A process in the host's mount namespace (init of the host procfs by default)."""
        self.prober = MountProber(stat_deadline)
        self.proc_root = proc_root

    def start(self) -> None:
        require_host_pid_namespace(self.proc_root)

    def close(self) -> None:
        self.prober.close()

    def collect(self, ctx: CollectContext) -> Iterable[Sample | HistogramSample]:
        self.prober.check_returned()
        host = self._host(ctx)
        if host is None:
            return []
        known = {r.path for r in ctx.targets}
        done_ns: set[int] = {host.mnt_ns}
        out: list[Sample | HistogramSample] = []
        for group in pod_groups_memo(ctx.targets, ctx.memo):
            excluded = host.node_wide if is_kubernetes(group.anchor) else host.all_devices
            volumes = self._volumes(ctx, group, known, done_ns, excluded)
            if not volumes:
                continue
            cid = group.anchor.cgroup_id
            stuck = 0
            for dev, (mountpoint, pid) in sorted(volumes.items()):
                try:
                    out.extend(self._measure(ctx, cid, pid, mountpoint, dev))
                except Stuck:
                    stuck += 1
            out.append(Sample(STUCK, cid, float(stuck), Kind.GAUGE))
        return out

    def _host(self, ctx: CollectContext) -> _Host | None:
        try:
            mnt_ns = ns_inode(ctx.proc_root, self.host_pid, "mnt")
            data = read_bounded(
                os.path.join(ctx.proc_root, str(self.host_pid), "mountinfo"), MOUNTINFO_LIMIT
            )
        except OSError:
            # without the host's table every node disk would look like a pod volume
            ctx.count_error(self.name)
            return None
        parsed = parse_mountinfo(data)
        if parsed.malformed:
            ctx.count_error(self.name, parsed.malformed)
        return _Host(mnt_ns, node_wide_devices(parsed.mounts), {m.dev for m in parsed.mounts})

    def _volumes(
        self,
        ctx: CollectContext,
        group: PodGroup,
        known: set[str],
        done_ns: set[int],
        excluded: set[tuple[int, int]],
    ) -> dict[tuple[int, int], tuple[str, int]]:
        """device -> (smallest mountpoint, a pid that sees it), over the pod's mount
        namespaces not seen before this cycle."""
        volumes: dict[tuple[int, int], tuple[str, int]] = {}
        for _, pids in pids_by_dir(group, known, ctx, self.name):
            for pid in pids:
                try:
                    mnt_ns = ns_inode(ctx.proc_root, pid, "mnt")
                    if mnt_ns in done_ns:
                        break
                    data = read_bounded(
                        os.path.join(ctx.proc_root, str(pid), "mountinfo"), MOUNTINFO_LIMIT
                    )
                except OSError:
                    ctx.count_error(self.name)
                    continue
                done_ns.add(mnt_ns)
                parsed = parse_mountinfo(data)
                if parsed.malformed:
                    ctx.count_error(self.name, parsed.malformed)
                for m in visible_mounts(parsed.mounts):
                    if not is_pod_volume(m, excluded):
                        continue
                    prev = volumes.get(m.dev)
                    if prev is None or (len(m.mountpoint), m.mountpoint) < (
                        len(prev[0]), prev[0]
                    ):
                        volumes[m.dev] = (m.mountpoint, pid)
                break
        return volumes

    def _measure(
        self, ctx: CollectContext, cid: int, pid: int, mountpoint: str, dev: tuple[int, int]
    ) -> list[Sample]:
        path = os.path.join(ctx.proc_root, str(pid), "root") + mountpoint
        try:
            r = self.prober.measure(path, dev, mountpoint)
        except OSError:
            ctx.count_error(self.name)
            return []
        if (os.major(r.st_dev), os.minor(r.st_dev)) != dev or r.st_dev != r.after_dev:
            ctx.count_error(self.name)
            return []
        vfs = r
        frsize = vfs.f_frsize or vfs.f_bsize
        labels = (("mountpoint", mountpoint),)
        values = (
            (CAPACITY, vfs.f_blocks * frsize),
            (USAGE, (vfs.f_blocks - vfs.f_bfree) * frsize),
            (AVAILABLE, vfs.f_bavail * frsize),
            (INODES, vfs.f_files),
            (INODES_FREE, vfs.f_ffree),
        )
        return [Sample(fam, cid, float(v), Kind.GAUGE, labels) for fam, v in values]


def create(settings: Settings) -> FsCollector:
    return FsCollector(host_pid=host_pid(settings.host_pid, settings.proc_root),
                       stat_deadline=min(STAT_DEADLINE_MAX, settings.collector_deadline / 2),
                       proc_root=settings.proc_root)

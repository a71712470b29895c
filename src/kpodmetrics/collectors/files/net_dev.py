"""Interface counters per pod network namespace from `/proc/<pid>/net/dev`.

All containers of a pod share one network namespace, so it is read once per pod
(through any process of the pod) and attributed to the pod-level cgroup. A namespace
is reported once per cycle even if several targets reach it (standalone nested
cgroups): the first target in path order, i.e. the outermost, owns it. Pods on the
host network (namespace inode equal to that of `<proc_root>/1/ns/net`, pid 1
unless configured otherwise) are skipped:
those counters are the node's, not the pod's. `lo` is skipped by default.

Readings are CUMULATIVE with `source="netns:<inode>"`, so a pod whose sandbox (and
namespace) is recreated starts a new baseline instead of looking like a reset.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Sequence

from kpodmetrics import families
from kpodmetrics.collectors.base import CollectContext
from kpodmetrics.collectors.files.support.collector import FileCollector
from kpodmetrics.collectors.files.support.files import read_bounded
from kpodmetrics.collectors.files.support.netdev import IfaceCounters, parse_net_dev
from kpodmetrics.collectors.files.support.procs import (
    host_pid,
    ns_inode,
    pids_by_dir,
    require_host_pid_namespace,
)
from kpodmetrics.collectors.files.support.targets import PodGroup, pod_groups_memo
from kpodmetrics.config import Settings
from kpodmetrics.families import Family, FamilyType
from kpodmetrics.samples import HistogramSample, Kind, Sample

NAME = "iface"
MAX_ATTEMPTS = 6
"""pids tried per pod and cycle before giving up (each failure is counted)."""
_FIELDS: tuple[tuple[str, Family], ...] = tuple(
    (f"{d}_{what}", Family(
        f"kpod_net_iface_{d}_{what}_total", FamilyType.COUNTER,
        f"{text} on the interface of the pod's network namespace (/proc/<pid>/net/dev).",
        unit, ("interface",)))
    for d, dtext in (("rx", "received"), ("tx", "transmitted"))
    for what, unit, text in (
        ("bytes", "By", f"Bytes {dtext}"),
        ("packets", "", f"Packets {dtext}"),
        ("errors", "", f"Errors while packets were {dtext}"),
        ("drops", "", f"Packets dropped that would have been {dtext}"),
    )
)
"""IfaceCounters attribute -> its family."""
FAMILIES = families.register(*(fam for _, fam in _FIELDS))


class IfaceCollector(FileCollector):
    name = NAME
    families = FAMILIES

    def __init__(self, skip_interfaces: Sequence[str] = ("lo",), host_pid: int = 1,
                 proc_root: str = "/proc") -> None:
        self.skip = frozenset(skip_interfaces)
        self.host_pid = host_pid
        """A process in the host's namespaces (init of the host procfs by default)."""
        self.proc_root = proc_root

    def start(self) -> None:
        require_host_pid_namespace(self.proc_root)

    def collect(self, ctx: CollectContext) -> Iterable[Sample | HistogramSample]:
        try:
            host_net = ns_inode(ctx.proc_root, self.host_pid, "net")
        except OSError:
            # without the host's namespace every host-network pod would be reported
            # with the node's counters: report nothing rather than something wrong
            ctx.count_error(self.name)
            return []
        known = {r.path for r in ctx.targets}
        seen: set[int] = {host_net}
        out: list[Sample | HistogramSample] = []
        for group in pod_groups_memo(ctx.targets, ctx.memo):
            reading = self._read_group_netns(ctx, group, known)
            if reading is None:
                continue
            netns, data = reading
            if netns in seen:
                continue
            seen.add(netns)
            parsed = parse_net_dev(data)
            if parsed.malformed:
                ctx.count_error(self.name, parsed.malformed)
            source = f"netns:{netns}"
            for ifname, counters in sorted(parsed.interfaces.items()):
                if ifname not in self.skip:
                    out.extend(self._samples(group.anchor.cgroup_id, ifname, counters, source))
        return out

    def _read_group_netns(
        self, ctx: CollectContext, group: PodGroup, known: set[str]
    ) -> tuple[int, bytes] | None:
        """Any live process of the pod will do: its containers share the namespace."""
        attempts = 0
        for _, pids in pids_by_dir(group, known, ctx, self.name):
            for pid in pids:
                attempts += 1
                try:
                    return read_netns(ctx.proc_root, pid)
                except OSError:
                    ctx.count_error(self.name)
                if attempts >= MAX_ATTEMPTS:
                    return None
        return None

    @staticmethod
    def _samples(cid: int, ifname: str, c: IfaceCounters, source: str) -> list[Sample]:
        labels = (("interface", ifname),)
        return [
            Sample(fam, cid, float(getattr(c, attr)), Kind.CUMULATIVE, labels, source)
            for attr, fam in _FIELDS
        ]


def read_netns(proc_root: str, pid: int) -> tuple[int, bytes]:
    """(namespace inode, net/dev bytes) of one process, checked to be the same
    namespace before and after the read (a pid reused in between would mix pods)."""
    before = ns_inode(proc_root, pid, "net")
    data = read_bounded(os.path.join(proc_root, str(pid), "net", "dev"))
    after = ns_inode(proc_root, pid, "net")
    if before != after:
        raise OSError(errno.ESRCH, "process changed network namespace during the read")
    return before, data


def create(settings: Settings) -> IfaceCollector:
    return IfaceCollector(host_pid=host_pid(settings.host_pid, settings.proc_root),
                          proc_root=settings.proc_root)

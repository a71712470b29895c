"""iface and fs collectors on fake /proc trees: once per pod namespace, host network
and node-wide mounts excluded, vanished pids counted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kpodmetrics.collectors.files import net_dev as iface
from kpodmetrics.collectors.files import volumes as fs
from kpodmetrics.collectors.files.support.mountinfo import parse_mountinfo
from kpodmetrics.samples import Kind

from .test_cgfiles_helpers import FIXTURES, ctx_for, k8s_refs, scalar, standalone_ref


def make_proc(root: Path, pid: int, *, net: Path | None = None, mnt: Path | None = None) -> Path:
    """A /proc/<pid> with ns/net and ns/mnt files; a shared inode means a shared ns."""
    d = root / str(pid)
    (d / "ns").mkdir(parents=True)
    (d / "net").mkdir()
    for name, src in (("net", net), ("mnt", mnt)):
        if src is None:
            (d / "ns" / name).write_text(f"{name}:{pid}")
        else:
            os.link(src, d / "ns" / name)
    return d


def make_pod(tmp: Path, name: str, containers: dict[str, str]) -> Path:
    pod = tmp / "cg" / name
    pod.mkdir(parents=True)
    (pod / "cgroup.procs").write_text("")
    for ctr, procs in containers.items():
        (pod / ctr).mkdir()
        (pod / ctr / "cgroup.procs").write_text(procs)
    return pod


def test_iface_once_per_pod_skips_lo_and_host_network(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    host = make_proc(proc, 1)
    pod_ns = make_proc(proc, 100)
    (pod_ns / "net" / "dev").write_bytes((FIXTURES / "proc/net_dev_v6").read_bytes())
    make_proc(proc, 101, net=pod_ns / "ns" / "net")  # second container, same netns
    (proc / "101" / "net" / "dev").write_bytes((FIXTURES / "proc/net_dev_v6").read_bytes())
    hostnet = make_proc(proc, 200, net=host / "ns" / "net")
    (hostnet / "net" / "dev").write_bytes((FIXTURES / "proc/net_dev_old").read_bytes())

    pod = make_pod(tmp_path, "pod-a", {"ctr-a": "100\n", "ctr-b": "101\n"})
    hpod = make_pod(tmp_path, "pod-h", {"ctr": "200\n"})
    refs = k8s_refs(pod, ["ctr-a", "ctr-b"], uid="a", base_id=1000) + k8s_refs(
        hpod, ["ctr"], uid="h", base_id=2000)
    ctx = ctx_for(refs, str(proc))
    samples = list(iface.IfaceCollector().collect(ctx))
    got = scalar(samples)
    assert ctx.errors == {}
    inode = os.stat(pod_ns / "ns" / "net").st_ino
    assert {s.source for s in samples} == {f"netns:{inode}"}
    assert all(s.kind is Kind.CUMULATIVE for s in samples)
    eth0 = (("interface", "eth0"),)
    expected_eth0 = {"rx_bytes": 1843205, "rx_packets": 12034, "rx_errors": 1, "rx_drops": 2,
                     "tx_bytes": 998877, "tx_packets": 8123, "tx_errors": 3, "tx_drops": 4}
    for key, value in expected_eth0.items():
        assert got[(f"kpod_net_iface_{key}_total", 1000, eth0)] == value
    # pod-level cgroup 1000 only; lo skipped; net1 (all zero) reported; host pod absent
    assert {(k[1], k[2]) for k in got} == {(1000, eth0), (1000, (("interface", "net1"),))}
    assert len(got) == 16


def test_iface_vanished_pid_is_counted_and_next_pid_used(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    make_proc(proc, 1)
    live = make_proc(proc, 101)
    (live / "net" / "dev").write_bytes((FIXTURES / "proc/net_dev_old").read_bytes())
    pod = make_pod(tmp_path, "pod", {"ctr-a": "99\n", "ctr-b": "101\n"})  # 99 exited
    ctx = ctx_for(k8s_refs(pod, ["ctr-a", "ctr-b", "ctr-gone"]), str(proc))
    got = scalar(iface.IfaceCollector().collect(ctx))
    assert got[("kpod_net_iface_rx_bytes_total", 1000, (("interface", "eth0"),))] == 4294967296
    assert ctx.errors == {"iface": 1}


def test_iface_without_host_namespace_reports_nothing(tmp_path: Path) -> None:
    ctx = ctx_for([], str(tmp_path / "no-proc"))
    assert list(iface.IfaceCollector().collect(ctx)) == []
    assert ctx.errors == {"iface": 1}


def test_iface_standalone_nested_cgroups_share_namespace_once(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    make_proc(proc, 1)
    a = make_proc(proc, 10)
    (a / "net" / "dev").write_bytes((FIXTURES / "proc/net_dev_old").read_bytes())
    make_proc(proc, 11, net=a / "ns" / "net")
    (proc / "11" / "net" / "dev").write_bytes((FIXTURES / "proc/net_dev_old").read_bytes())
    outer = tmp_path / "cg" / "ctr"
    inner = outer / "sub"
    inner.mkdir(parents=True)
    (outer / "cgroup.procs").write_text("10\n")
    (inner / "cgroup.procs").write_text("11\n")
    refs = [standalone_ref(inner, 6, "/ctr/sub"), standalone_ref(outer, 5, "/ctr")]
    got = scalar(iface.IfaceCollector().collect(ctx_for(refs, str(proc))))
    assert {k[1] for k in got} == {5}  # the outermost cgroup owns the namespace


# -- filesystems -----------------------------------------------------------------


def test_pod_volume_selection_kubernetes_rules() -> None:
    host = parse_mountinfo((FIXTURES / "proc/mountinfo_host").read_bytes()).mounts
    pod = parse_mountinfo((FIXTURES / "proc/mountinfo_pod").read_bytes()).mounts
    node_wide = fs.node_wide_devices(host)
    assert node_wide == {(8, 1), (8, 2), (0, 24)}  # "/" (and kubelet dirs), /var/log, /run
    kept = sorted(m.mountpoint for m in pod if fs.is_pod_volume(m, node_wide))
    assert kept == ["/data", "/data copy", "/mnt/nfs",
                    "/var/run/secrets/kubernetes.io/serviceaccount"]
    # standalone rule: everything the host has is excluded
    assert [m.mountpoint for m in pod if fs.is_pod_volume(m, {m.dev for m in host})] == []


def _fs_proc(tmp_path: Path, volume: Path, extra_mounts: str = "") -> tuple[Path, Path]:
    """/proc with host pid 1 and a pod pid 300 whose root shows `volume` at /vol."""
    proc = tmp_path / "proc"
    host = make_proc(proc, 1)
    st = os.stat(volume)
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    (host / "mountinfo").write_bytes((FIXTURES / "proc/mountinfo_host").read_bytes())
    p = make_proc(proc, 300)
    (p / "mountinfo").write_text(
        "2401 2308 0:312 / / rw - overlay overlay rw\n"
        f"2500 2401 {dev} / /vol rw,relatime - tmpfs kpodvol rw\n"
        f"2501 2401 {dev} / /vol-again rw,relatime - tmpfs kpodvol rw\n" + extra_mounts
    )
    root = tmp_path / "container-root"
    root.mkdir()
    (root / "vol").symlink_to(volume)
    (root / "vol-again").symlink_to(volume)
    (p / "root").symlink_to(root)
    return proc, p


def test_fs_reports_pod_volume_once_with_statvfs_values(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    proc, _ = _fs_proc(tmp_path, volume)
    pod = make_pod(tmp_path, "pod", {"ctr-a": "300\n"})
    ctx = ctx_for(k8s_refs(pod, ["ctr-a"]), str(proc))
    got = scalar(fs.FsCollector().collect(ctx))
    assert ctx.errors == {}
    vfs = os.statvfs(volume)
    mp = (("mountpoint", "/vol"),)
    assert set(got) == {(f, 1000, mp) for f in (
        "kpod_fs_capacity_bytes", "kpod_fs_usage_bytes", "kpod_fs_available_bytes",
        "kpod_fs_inodes", "kpod_fs_inodes_free")} | {("kpod_fs_stuck_mounts", 1000, ())}
    assert got[("kpod_fs_stuck_mounts", 1000, ())] == 0
    assert got[("kpod_fs_capacity_bytes", 1000, mp)] == vfs.f_blocks * vfs.f_frsize
    assert got[("kpod_fs_inodes", 1000, mp)] == vfs.f_files
    # usage moves with other writers on the test machine's disk: within 64 MiB
    used = (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize
    assert got[("kpod_fs_usage_bytes", 1000, mp)] == pytest.approx(used, abs=64 << 20)


def test_fs_skips_when_path_is_not_the_mounted_device(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    proc, _ = _fs_proc(tmp_path, volume, "2502 2401 7:99 / /swapped rw - ext4 /dev/loop99 rw\n")
    (tmp_path / "container-root" / "swapped").symlink_to("/")  # a different device
    pod = make_pod(tmp_path, "pod", {"ctr-a": "300\n"})
    ctx = ctx_for(k8s_refs(pod, ["ctr-a"]), str(proc))
    got = scalar(fs.FsCollector().collect(ctx))
    assert {k[2] for k in got} == {(("mountpoint", "/vol"),), ()}
    assert ctx.errors == {"fs": 1}


def test_fs_host_mount_namespace_and_vanished_pid(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    proc, _ = _fs_proc(tmp_path, volume)
    make_proc(proc, 400, mnt=proc / "1" / "ns" / "mnt")  # a process in the host's mount ns
    pod = make_pod(tmp_path, "pod", {"ctr-a": "400\n", "ctr-b": "77\n"})
    ctx = ctx_for(k8s_refs(pod, ["ctr-a", "ctr-b"]), str(proc))
    assert list(fs.FsCollector().collect(ctx)) == []
    assert ctx.errors == {"fs": 1}  # pid 77 vanished


def test_fs_and_iface_factories() -> None:
    from kpodmetrics.config import Settings

    assert fs.create(Settings()).name == "fs"
    assert iface.create(Settings()).name == "iface"

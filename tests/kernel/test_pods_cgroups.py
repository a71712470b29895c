"""Real cgroups in the unified hierarchy, pods from the API test server, the resolver.

The kernel's own cgroup id of each directory is taken from name_to_handle_at(2) (the
file handle of a cgroup2 directory is its 64-bit kernfs id, what BPF reads from
`kn->id`), independently of the resolver's walk, which uses the directory inode. A
real process is moved into the container cgroup and /proc/<pid>/cgroup confirms the
kernel placed it there."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from kpodmetrics.config import Settings
from kpodmetrics.pods import cgroupfs, kubernetes
from tests.conftest import require, require_root
from tests.k8s_api_server import FakeApiServer, make_pod
from tests.kernel.cgroup_util import KernelCgroup, make_cgroups

NODE = "node-k"
AT_FDCWD = -100


class _FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * 64)]


def kernel_cgroup_id(path: str) -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fh = _FileHandle(handle_bytes=64)
    mount_id = ctypes.c_int()
    if libc.name_to_handle_at(AT_FDCWD, path.encode(), ctypes.byref(fh),
                              ctypes.byref(mount_id), 0) != 0:
        raise OSError(ctypes.get_errno(), f"name_to_handle_at {path}")
    assert fh.handle_bytes == 8
    return int.from_bytes(bytes(fh.f_handle[:8]), "little")


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_real_cgroups_resolve_to_pods_and_drain_after_grace(tmp_path: Path) -> None:
    require_root()
    require(os.path.isdir("/sys/fs/cgroup/unified") or cgroupfs.is_cgroup2("/sys/fs/cgroup"),
            "needs a cgroup2 hierarchy")
    uid_a, uid_b = str(uuid.uuid4()), str(uuid.uuid4())
    cid_a, sandbox, cid_b = (uuid.uuid4().hex * 2 for _ in range(3))
    sysd = (f"kubepods.slice/kubepods-burstable.slice/"
            f"kubepods-burstable-pod{uid_a.replace('-', '_')}.slice")
    cgfs = f"kubepods/besteffort/pod{uid_b}"
    names = [sysd, f"{sysd}/cri-containerd-{cid_a}.scope",
             f"{sysd}/cri-containerd-{sandbox}.scope", cgfs, f"{cgfs}/{cid_b}",
             "system.slice/sshd.service"]
    srv = FakeApiServer()
    await srv.start()
    sleeper = None
    base = ""
    try:
        with make_cgroups(*names) as cgs:
            pod_dir, app, pause, pod_b, app_b, sshd = cgs
            base = os.path.dirname(os.path.dirname(os.path.dirname(pod_dir.path)))
            assert os.path.basename(base).startswith("kpod-test-")
            sleeper = subprocess.Popen(["sleep", "30"])
            app.add(sleeper.pid)
            proc_cgroup = Path(f"/proc/{sleeper.pid}/cgroup").read_text()
            assert f"0::{app.rel}\n" in proc_cgroup or app.rel in proc_cgroup

            pod_a = srv.add(make_pod("web-0", namespace="shop", node=NODE, uid=uid_a,
                                     containers={"app": cid_a}, labels={"app": "web"}))
            srv.add(make_pod("job-1", namespace="batch", node=NODE, uid=uid_b,
                             containers={"worker": cid_b}, runtime="docker"))
            s = Settings(node_name=NODE, cgroup_root=base, grace_period=0.5,
                         kubeconfig=srv.write_kubeconfig(str(tmp_path / "kc")),
                         pod_labels=("app",))
            att = await kubernetes.start_kubernetes(s, None, backoff_base=0.05)
            try:
                r = att.resolver
                await asyncio.to_thread(r.refresh)

                def labels(cg: KernelCgroup) -> dict[str, str] | None:
                    owner = r.resolve(kernel_cgroup_id(cg.path))
                    return None if owner is None else dict(owner.labels)

                assert labels(app) == {"namespace": "shop", "pod": "web-0", "container": "app",
                                       "label_app": "web"}
                assert labels(pause)["container"] == ""  # type: ignore[index]
                assert labels(pod_dir) == {"namespace": "shop", "pod": "web-0",
                                           "container": "", "label_app": "web"}
                assert labels(app_b) == {"namespace": "batch", "pod": "job-1",
                                         "container": "worker", "label_app": ""}
                assert labels(pod_b)["container"] == ""  # type: ignore[index]
                assert labels(sshd) is None and r.ignored(kernel_cgroup_id(sshd.path))
                assert r.stats.unresolved_lookups == 0
                targets = {t.cgroup_id: t.path for t in r.targets()}
                assert targets == {kernel_cgroup_id(c.path): c.path
                                   for c in (pod_dir, app, pod_b, app_b)}

                # the pod is deleted: still attributed within the grace period, then drained
                srv.delete(pod_a["metadata"]["uid"])
                await until(lambda: uid_a not in r.pod_uids())
                await asyncio.to_thread(r.refresh)
                assert labels(app) is not None and r.drain_removed() == []
                await asyncio.sleep(0.6)
                await asyncio.to_thread(r.refresh)
                drained = {o.key for o in r.drain_removed()}
                assert drained == {f"{uid_a}/app", f"{uid_a}/"}
                assert labels(app) is None
                assert labels(app_b) is not None  # the other pod is untouched
            finally:
                await att.close()
    finally:
        if sleeper is not None:
            sleeper.kill()
            sleeper.wait()
        await srv.close()
    assert not os.path.exists(base)  # every cgroup the test made is gone


def test_walk_skips_listing_leaves_and_still_finds_every_cgroup() -> None:
    """walk() lists only directories whose link count says they have subdirectories
    (kernfs: 2 + subdirectories). Oracle: os.walk of the same tree and the kernel's own
    cgroup id of each directory (name_to_handle_at), before and after a leaf gets a
    child (its count goes from 2 to 3, so the next walk lists it)."""
    require_root()
    with make_cgroups("a", "a/b/c", "d") as (a, _c, d):
        base = os.path.dirname(a.path)

        def rel(p: str) -> str:
            r = os.path.relpath(p, base)
            return "/" if r == "." else "/" + r

        def oracle() -> dict[str, int]:
            return {rel(p): kernel_cgroup_id(p) for p, _dirs, _files in os.walk(base)}

        assert os.stat(d.path).st_nlink == cgroupfs.LEAF_NLINK  # kernfs counts links
        assert os.stat(a.path).st_nlink == cgroupfs.LEAF_NLINK + 1
        assert dict(cgroupfs.walk(base)) == oracle()
        assert len(oracle()) == 5  # base, a, a/b, a/b/c, d
        os.mkdir(os.path.join(d.path, "late"))
        assert os.stat(d.path).st_nlink == cgroupfs.LEAF_NLINK + 1
        got = dict(cgroupfs.walk(base))
        assert got == oracle() and "/d/late" in got

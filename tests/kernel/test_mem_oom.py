"""OOM kills are charged to the victim's cgroup, not to the task that hit the limit.

Two helpers share one memory-limited cgroup (a v1 memory cgroup created below this
process's own memory cgroup on hybrid hosts, `memory.max` of a common parent on pure
v2 hosts) but sit in different unified-hierarchy test cgroups. The victim holds
most of the limit and has oom_score_adj 1000; the trigger (our own adj, and less
memory, so never chosen first) then allocates past the limit, so the kill happens
in the trigger's context. The victim's cgroup must gain exactly one kill (and the memory cgroup's own oom_kill
counter must say one), the trigger's and the observing test's cgroups none.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator

import pytest

from kpodmetrics.bpf import features
from kpodmetrics.bpf.maps import u64_key
from kpodmetrics.bpf.structs import KpodMemStats
from kpodmetrics.collectors.ebpf.mem_events import MemCollector
from tests.conftest import require, require_root
from tests.kernel.cgroup_util import (
    KernelCgroup,
    build_helper,
    make_cgroups,
    remove_tree,
    unified_root,
)
from tests.kernel.variant_util import start_forced

LIMIT_MIB = 64
VICTIM_MIB = 48
TRIGGER_MIB = 32
V1_MEMORY = "/sys/fs/cgroup/memory"


def own_cgroup(controller: str) -> str:
    """This process's cgroup path for a v1 controller, or '' for the unified one."""
    with open("/proc/self/cgroup") as fh:
        for line in fh:
            _id, ctrls, path = line.rstrip("\n").split(":", 2)
            if controller in ctrls.split(",") or (not controller and not ctrls):
                return path
    raise LookupError(controller)


@contextlib.contextmanager
def v1_memcg(limit: int) -> Iterator[str]:
    """A limited v1 memory cgroup UNDER our own memory cgroup; removed after."""
    path = os.path.join(V1_MEMORY + own_cgroup("memory"), f"kpod-test-{uuid.uuid4().hex[:10]}")
    os.mkdir(path)
    try:
        with open(os.path.join(path, "memory.limit_in_bytes"), "w") as fh:
            fh.write(str(limit))
        yield path
    finally:
        remove_tree(path)  # kills its tasks, retries the rmdir while they exit


def oom_kill_count(memcg_dir: str) -> int:
    """The memory cgroup's own count of OOM kills (v1 memory.oom_control, v2 memory.events)."""
    name = "memory.oom_control" if os.path.exists(os.path.join(memcg_dir, "memory.oom_control")) \
        else "memory.events"
    with open(os.path.join(memcg_dir, name)) as fh:
        for line in fh:
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    raise LookupError(f"no oom_kill in {name}")


def spawn(argv: list[str], cgroup_files: list[str], oom_adj: int) -> subprocess.Popen[bytes]:
    def enter() -> None:
        for f in cgroup_files:
            with open(f, "w") as fh:
                fh.write(str(os.getpid()))
        with open("/proc/self/oom_score_adj", "w") as fh:
            fh.write(str(oom_adj))

    p = subprocess.Popen(argv, preexec_fn=enter, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline() == b"ready\n"
    return p


def own_oom_adj() -> int:
    """Lowering oom_score_adj needs CAP_SYS_RESOURCE; the trigger keeps ours instead."""
    with open("/proc/self/oom_score_adj") as fh:
        return int(fh.read())


def release(p: subprocess.Popen[bytes]) -> None:
    assert p.stdin is not None
    p.stdin.write(b"g")
    p.stdin.flush()


@contextlib.contextmanager
def limited_pair() -> Iterator[tuple[KernelCgroup, KernelCgroup, list[str], list[str], str]]:
    """(victim cg, trigger cg, victim cgroup files, trigger cgroup files, memcg dir)."""
    limit = LIMIT_MIB << 20
    if os.path.isfile(os.path.join(V1_MEMORY, "memory.limit_in_bytes")):
        with make_cgroups("victim", "trigger") as (victim, trigger), v1_memcg(limit) as mem:
            procs = os.path.join(mem, "cgroup.procs")
            yield (victim, trigger, [os.path.join(victim.path, "cgroup.procs"), procs],
                   [os.path.join(trigger.path, "cgroup.procs"), procs], mem)
        return
    # pure v2 (not exercised on the hybrid development hosts): a parent with memory.max
    root = unified_root()
    with open(os.path.join(root, "cgroup.controllers")) as fh:
        require("memory" in fh.read().split(), "no memory controller in the unified hierarchy")
    base = os.path.join(root, f"kpod-test-{uuid.uuid4().hex[:10]}")
    os.mkdir(base)
    try:
        with open(os.path.join(root, "cgroup.subtree_control"), "w") as fh:
            fh.write("+memory")
        limited = os.path.join(base, "limited")
        os.mkdir(limited)
        with open(os.path.join(base, "cgroup.subtree_control"), "w") as fh:
            fh.write("+memory")
        with open(os.path.join(limited, "memory.max"), "w") as fh:
            fh.write(str(limit))
        for name in ("victim", "trigger"):
            os.mkdir(os.path.join(limited, name))
        victim = KernelCgroup(os.path.join(limited, "victim"))
        trigger = KernelCgroup(os.path.join(limited, "trigger"))
        yield (victim, trigger, [os.path.join(victim.path, "cgroup.procs")],
               [os.path.join(trigger.path, "cgroup.procs")], limited)
    finally:
        remove_tree(base)


def mark_victim_has_task() -> bool:
    """The tracepoint's format lists `uid` from the same commit that passed the task."""
    root = features.tracefs_root()
    fmt = os.path.join(root or "", "events/oom/mark_victim/format")
    with contextlib.suppress(OSError), open(fmt) as fh:
        return "uid" in fh.read()
    return False


def lacks(variant: str) -> Callable[[str], str]:
    """What the kernel must offer for each OOM variant (see ebpf/core_fixes.bpf.h)."""
    def why(reason: str) -> str:
        if variant == "tp_btf" and not mark_victim_has_task():
            return "the task argument of oom/mark_victim (6.9, commit 72ba14deb40a)"
        if variant == "fentry" and "EPERM" in reason:
            return "BPF trampolines for fentry (the load is refused with EPERM)"
        if variant == "kprobe" and "without kprobes" in reason:
            return "kprobes (CONFIG_KPROBES)"
        return ""
    return why


@pytest.mark.kernel
@pytest.mark.parametrize("variant", ["tp_btf", "fentry", "kprobe"])
def test_oom_kill_charged_to_the_victim(variant: str) -> None:
    require_root()
    exe = build_helper("mem_hog")
    c = start_forced(MemCollector, "oom_kills", variant, lacks(variant))
    observer = os.stat(unified_root() + own_cgroup("")).st_ino
    try:
        with limited_pair() as (victim_cg, trigger_cg, victim_files, trigger_files, memcg):
            victim = spawn([exe, str(VICTIM_MIB)], victim_files, 1000)
            trigger = spawn([exe, str(TRIGGER_MIB)], trigger_files, own_oom_adj())
            release(victim)
            assert victim.stdout is not None and victim.stdout.readline() == b"done\n"
            c.read_map("mem_stats")  # from zero
            kills_before = oom_kill_count(memcg)
            release(trigger)
            assert trigger.stdout is not None
            assert trigger.stdout.readline() == b"done\n", "the trigger must survive"
            assert victim.wait(timeout=10) == -9, "the victim must be OOM-killed"
            kills = oom_kill_count(memcg) - kills_before
            got = {u64_key(k): KpodMemStats.from_buffer_copy(v)
                   for k, v in c.read_map("mem_stats").items()}
            trigger.kill()
            trigger.wait()
    finally:
        c.close()
    print(f"\noom ({variant}): memcg oom_kill delta={kills}, victim cgroup counter="
          f"{got[victim_cg.id].oom_kills if victim_cg.id in got else 0}")
    assert kills == 1
    assert got[victim_cg.id].oom_kills == 1
    assert trigger_cg.id not in got or got[trigger_cg.id].oom_kills == 0
    assert observer not in got or got[observer].oom_kills == 0
    assert sum(s.oom_kills for s in got.values()) == 1

"""Feature probes: can this kernel attach a program of a given section? Asked once.

Probing the attach target before loading lets a missing hook disable only the
metrics it feeds, with a reason a person can act on, instead of failing the whole
object at load time.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

from kpodmetrics.bpf import libbpf

TRACEFS_ROOTS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
VMLINUX_BTF = "/sys/kernel/btf/vmlinux"


@dataclass(frozen=True, slots=True)
class Probe:
    ok: bool
    reason: str = ""


def tracefs_root() -> str | None:
    for root in TRACEFS_ROOTS:
        if os.path.isdir(os.path.join(root, "events")):
            return root
    return None


@functools.lru_cache(maxsize=1)
def has_vmlinux_btf() -> bool:
    return os.path.exists(VMLINUX_BTF)


@functools.lru_cache(maxsize=512)
def btf_typedef_exists(name: str) -> bool:
    """True when vmlinux BTF has typedef `name` (e.g. btf_trace_sched_switch)."""
    lib, ffi = libbpf.lib(), libbpf.ffi
    btf = _vmlinux_btf()
    if btf == ffi.NULL:
        return False
    return int(lib.btf__find_by_name_kind(btf, name.encode(), libbpf.BTF_KIND_TYPEDEF)) > 0


_btf_handle: Any = None


def _vmlinux_btf() -> Any:
    global _btf_handle
    if _btf_handle is None:
        lib, ffi = libbpf.lib(), libbpf.ffi
        h = lib.btf__load_vmlinux_btf()
        _btf_handle = ffi.NULL if lib.libbpf_get_error(h) else h
    return _btf_handle


def release_vmlinux_btf() -> None:
    """Free the parsed kernel BTF the probes use, once every collector is loaded.

    It is the agent's largest C allocation (13 MB resident on 6.18: the raw BTF plus
    libbpf's type index), needed only while programs are chosen; kept, it was a fifth
    of an idle agent's memory. The answers already given stay cached; a later probe
    would load it again."""
    global _btf_handle
    if _btf_handle is not None and _btf_handle != libbpf.ffi.NULL:
        libbpf.lib().btf__free(_btf_handle)
    _btf_handle = None


def tracepoint_exists(category: str, event: str) -> bool:
    root = tracefs_root()
    return root is not None and os.path.isdir(os.path.join(root, "events", category, event))


def probe_section(section: str) -> Probe:
    """Whether a program of this ELF section can attach on this kernel."""
    kind, _, target = section.partition("/")
    if kind == "tp_btf":
        if not has_vmlinux_btf():
            return Probe(False, f"kernel has no BTF ({VMLINUX_BTF}); tp_btf/{target} needs it")
        if not btf_typedef_exists(f"btf_trace_{target}"):
            return Probe(False, f"tracepoint {target} not in this kernel")
        return Probe(True)
    if kind in ("raw_tp", "raw_tracepoint"):
        if btf_typedef_exists(f"btf_trace_{target}"):
            return Probe(True)
        if tracefs_root() is None:
            return Probe(False, f"cannot confirm raw tracepoint {target}: no BTF entry, no tracefs")
        found = any(
            os.path.isdir(os.path.join(d, target))
            for d in _tracefs_event_dirs()
        )
        return Probe(found, "" if found else f"raw tracepoint {target} not in this kernel")
    if kind in ("tp", "tracepoint"):
        cat, _, event = target.partition("/")
        if tracefs_root() is None:
            return Probe(False, "tracefs not mounted (mount -t tracefs tracefs /sys/kernel/tracing)")
        if not tracepoint_exists(cat, event):
            return Probe(False, f"tracepoint {cat}/{event} not in this kernel")
        return Probe(True)
    if kind in ("kprobe", "kretprobe"):
        root = tracefs_root()
        if root is None or not os.path.exists(os.path.join(root, "kprobe_events")):
            return Probe(False, "kernel built without kprobes")
        return Probe(True)
    if kind in ("fentry", "fexit"):
        if not has_vmlinux_btf():
            return Probe(False, "fentry/fexit needs kernel BTF")
        return Probe(True)  # decided by the load itself (EPERM on locked-down kernels)
    if kind == "perf_event":
        return Probe(True)
    return Probe(True)


def _tracefs_event_dirs() -> list[str]:
    root = tracefs_root()
    if root is None:
        return []
    ev = os.path.join(root, "events")
    return [os.path.join(ev, d) for d in os.listdir(ev) if os.path.isdir(os.path.join(ev, d))]

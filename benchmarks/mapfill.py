"""Synthetic entries written straight into the agent's loaded metric maps.

The scale benchmark needs thousands of cgroups *with data*; running a task in each
would measure the machine, not the agent. So, from outside the agent, each metric map
gets one entry per real benchmark cgroup: key = that cgroup's id in the first eight
bytes (and SUBKEYS entries per cgroup where the key has a sub-key such as a syscall
number); value = every u64 set to 1, which decodes as a small non-zero counter or
histogram. The agent reads and resets them every cycle, so they are rewritten often.
"""

from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass
from typing import Any

from cffi import FFI

_CDEF = """
int bpf_map_get_fd_by_id(uint32_t id);
struct bpf_map_batch_opts { size_t sz; uint64_t elem_flags; uint64_t flags; };
int bpf_map_update_batch(int fd, const void *keys, const void *values, uint32_t *count,
                         const struct bpf_map_batch_opts *opts);
int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags);
int libbpf_num_possible_cpus(void);
"""
_ffi = FFI()
_ffi.cdef(_CDEF)
_lib: Any = None

# map types that hold per-cgroup metric entries (hash flavours); arrays hold health
_HASH_TYPES = {"hash", "lru_hash", "percpu_hash", "lru_percpu_hash"}
# per-task or per-socket scratch maps: not per-cgroup data, leave them alone
_SCRATCH_WORDS = frozenset({"start", "scratch", "tmp", "pending", "inflight", "ts", "sock",
                            "sk", "opened", "filter"})
# maps with a sub-key after the cgroup id (e.g. syscall number) get this many per cgroup
SUBKEYS = 4


def _libbpf() -> Any:
    global _lib
    if _lib is None:
        _lib = _ffi.dlopen(os.environ.get("KPOD_LIBBPF", "libbpf.so.1"))
    return _lib


@dataclass(frozen=True, slots=True)
class Target:
    map_id: int
    name: str
    key_size: int
    value_size: int
    max_entries: int
    percpu: bool


def choose(maps: dict[int, dict[str, object]], ids: frozenset[int],
           metric_names: set[str]) -> list[Target]:
    """Metric maps of the agent worth filling: per-cgroup hash maps named in its own
    kpod_bpf_map_capacity self-metric (kernel names are cut to 15 characters)."""
    out = []
    for mid in sorted(ids):
        m = maps.get(mid)
        if not m or str(m.get("type")) not in _HASH_TYPES:
            continue
        name = str(m.get("name", ""))
        if _SCRATCH_WORDS & set(name.split("_")):
            continue
        if metric_names and not any(n[:15] == name for n in metric_names):
            continue
        if int(m.get("bytes_key", 0)) < 8:  # type: ignore[call-overload]
            continue
        out.append(Target(mid, name, int(m["bytes_key"]), int(m["bytes_value"]),  # type: ignore[call-overload]
                          int(m["max_entries"]), "percpu" in str(m["type"])))  # type: ignore[call-overload]
    return out


def value_bytes(t: Target, ncpu: int) -> bytes:
    one = struct.pack("<Q", 1) * (t.value_size // 8) + b"\0" * (t.value_size % 8)
    if not t.percpu:
        return one
    stride = ((t.value_size + 7) // 8) * 8
    return (one + b"\0" * (stride - t.value_size)) * ncpu


def key_bytes(t: Target, cgroup_id: int, sub: int = 0) -> bytes:
    """cgroup id first; a sub-key (syscall number, direction, ...) as the next u32."""
    if t.key_size >= 12:
        return struct.pack("<QI", cgroup_id, sub) + b"\0" * (t.key_size - 12)
    return struct.pack("<Q", cgroup_id) + b"\0" * (t.key_size - 8)


def keys_for(t: Target, cgroup_ids: list[int]) -> list[bytes]:
    subs = range(SUBKEYS) if t.key_size >= 12 else range(1)
    return [key_bytes(t, c, s) for c in cgroup_ids for s in subs][: t.max_entries]


class Filler:
    """Keeps the target maps full of entries for `cgroup_ids` from a background thread."""

    def __init__(self, targets: list[Target], cgroup_ids: list[int], period: float) -> None:
        self.targets = targets
        self.period = period
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0
        self.rounds = 0
        lib = _libbpf()
        ncpu = int(lib.libbpf_num_possible_cpus())
        self._fds: list[tuple[Target, int, Any, Any, int]] = []
        for t in targets:
            fd = int(lib.bpf_map_get_fd_by_id(t.map_id))
            if fd < 0:
                self.errors += 1
                continue
            klist = keys_for(t, cgroup_ids)
            keys = b"".join(klist)
            vals = value_bytes(t, ncpu) * len(klist)
            # from_buffer keeps `keys` and `vals` alive as long as the cdata lives
            self._fds.append((t, fd, _ffi.from_buffer(keys), _ffi.from_buffer(vals), len(klist)))

    @property
    def entries(self) -> dict[str, int]:
        return {t.name: n for t, _, _, _, n in self._fds}

    def fill_once(self) -> None:
        lib = _libbpf()
        opts = _ffi.new("struct bpf_map_batch_opts *",
                        {"sz": _ffi.sizeof("struct bpf_map_batch_opts")})
        for _t, fd, keys, vals, n in self._fds:
            count = _ffi.new("uint32_t *", n)
            if lib.bpf_map_update_batch(fd, keys, vals, count, opts) < 0:
                self.errors += 1
        self.rounds += 1

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.fill_once()

    def __enter__(self) -> Filler:
        self.fill_once()
        self._thread = threading.Thread(target=self._run, name="kpod-bench-filler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for _t, fd, *_ in self._fds:
            os.close(fd)
        self._fds = []

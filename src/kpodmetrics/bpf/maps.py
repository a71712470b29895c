"""Reading BPF maps: one lookup-and-delete batch per map per cycle, legacy fallback.

The batch call snaps and resets a map in one pass. Kernels without batch support
(before 5.6, or map types without it) answer EINVAL/ENOTSUPP/EOPNOTSUPP; the map then
switches to the legacy get-next-key / lookup / delete walk for good. `legacy=True`
forces that path so tests can exercise both.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass
from typing import Any

from kpodmetrics.bpf import libbpf
from kpodmetrics.bpf.errors import MapError, remedy_for

_log = logging.getLogger(__name__)
ENOTSUPP = 524  # kernel-internal "not supported", leaks out of bpf()
_UNSUPPORTED = frozenset({errno.EINVAL, errno.EOPNOTSUPP, ENOTSUPP, errno.ENOSYS})


@dataclass(frozen=True, slots=True)
class MapRead:
    """Entries snapped from a map: `count` keys and values, back to back."""

    keys: bytes
    values: bytes
    count: int
    key_size: int
    value_stride: int

    def items(self) -> list[tuple[bytes, bytes]]:
        k, v = self.key_size, self.value_stride
        return [
            (self.keys[i * k : (i + 1) * k], self.values[i * v : (i + 1) * v])
            for i in range(self.count)
        ]


class BpfMap:
    """A map of a loaded object, by fd."""

    def __init__(self, handle: Any, object_name: str, *, legacy: bool = False) -> None:
        lib = libbpf.lib()
        self.name = libbpf.ffi.string(lib.bpf_map__name(handle)).decode()
        self.object_name = object_name
        self.fd = int(lib.bpf_map__fd(handle))
        self.type = int(lib.bpf_map__type(handle))
        self.key_size = int(lib.bpf_map__key_size(handle))
        self.value_size = int(lib.bpf_map__value_size(handle))
        self.max_entries = int(lib.bpf_map__max_entries(handle))
        self.percpu = self.type in libbpf.PERCPU_TYPES
        self.ncpu = libbpf.num_possible_cpus() if self.percpu else 1
        # per-CPU values come back as one 8-byte aligned slot per possible CPU
        self.value_stride = (
            ((self.value_size + 7) // 8) * 8 * self.ncpu if self.percpu else self.value_size
        )
        self.legacy = legacy
        self.batch_supported: bool | None = None
        self._buffers: tuple[Any, Any, Any, Any, Any] | None = None

    def __repr__(self) -> str:
        return f"BpfMap({self.object_name}:{self.name}, fd={self.fd})"

    def _what(self, op: str) -> str:
        return f"map {self.name} of {self.object_name}: {op}"

    def read_and_reset(self) -> MapRead:
        """Snap every entry and delete it (batch, or the legacy walk)."""
        if not self.legacy and self.batch_supported is not False:
            try:
                read = self._batch()
                self.batch_supported = True
                return read
            except _BatchUnsupported as exc:
                _log.info("%s: batch ops unsupported (%s); using the legacy walk",
                          self._what("lookup_and_delete_batch"), exc)
                self.batch_supported = False
        return self._legacy()

    def _alloc(self) -> tuple[Any, Any, Any, Any, Any]:
        if self._buffers is None:
            ffi = libbpf.ffi
            n = max(self.max_entries, 1)
            tok = max(self.key_size, 8)
            self._buffers = (
                ffi.new("char[]", n * self.key_size),
                ffi.new("char[]", n * self.value_stride),
                ffi.new("char[]", tok),
                ffi.new("char[]", tok),
                ffi.new("uint32_t *"),
            )
        return self._buffers

    def _batch(self) -> MapRead:
        ffi, lib = libbpf.ffi, libbpf.lib()
        keys, values, tok_in, tok_out, count = self._alloc()
        opts = ffi.new("struct bpf_map_batch_opts *", {"sz": ffi.sizeof("struct bpf_map_batch_opts")})
        total = 0
        kbuf = bytearray()
        vbuf = bytearray()
        first = True
        n = max(self.max_entries, 1)
        while True:
            count[0] = n
            rc = lib.bpf_map_lookup_and_delete_batch(
                self.fd, ffi.NULL if first else tok_in, tok_out, keys, values, count, opts
            )
            got = int(count[0])
            if rc < 0 and -rc != errno.ENOENT:
                if first and -rc in _UNSUPPORTED:
                    raise _BatchUnsupported(libbpf.strerror(rc))
                raise MapError(self._what("lookup_and_delete_batch"), rc, remedy=remedy_for(rc))
            if got:
                kbuf += ffi.buffer(keys, got * self.key_size)
                vbuf += ffi.buffer(values, got * self.value_stride)
                total += got
            if rc < 0 or got == 0:  # ENOENT: walked the whole map
                break
            ffi.memmove(tok_in, tok_out, ffi.sizeof(tok_out))
            first = False
        return MapRead(bytes(kbuf), bytes(vbuf), total, self.key_size, self.value_stride)

    def _legacy(self) -> MapRead:
        ffi, lib = libbpf.ffi, libbpf.lib()
        key = ffi.new("char[]", self.key_size)
        nxt = ffi.new("char[]", self.key_size)
        all_keys: list[bytes] = []
        rc = lib.bpf_map_get_next_key(self.fd, ffi.NULL, nxt)
        while rc == 0:
            all_keys.append(bytes(ffi.buffer(nxt, self.key_size)))
            ffi.memmove(key, nxt, self.key_size)
            rc = lib.bpf_map_get_next_key(self.fd, key, nxt)
            if len(all_keys) > self.max_entries * 4:  # a map rebuilt under us: stop
                break
        if rc < 0 and -rc != errno.ENOENT:
            raise MapError(self._what("get_next_key"), rc, remedy=remedy_for(rc))
        val = ffi.new("char[]", self.value_stride)
        kbuf, vbuf, count = bytearray(), bytearray(), 0
        for k in all_keys:
            rc = lib.bpf_map_lookup_elem(self.fd, k, val)
            if rc < 0:
                if -rc == errno.ENOENT:  # evicted meanwhile
                    continue
                raise MapError(self._what("lookup"), rc, remedy=remedy_for(rc))
            drc = lib.bpf_map_delete_elem(self.fd, k)
            if drc < 0 and -drc != errno.ENOENT:
                raise MapError(self._what("delete"), drc, remedy=remedy_for(drc))
            kbuf += k
            vbuf += ffi.buffer(val, self.value_stride)
            count += 1
        return MapRead(bytes(kbuf), bytes(vbuf), count, self.key_size, self.value_stride)

    def read_all(self) -> MapRead:
        """Snap every entry without deleting (for ARRAY maps such as health counters)."""
        ffi, lib = libbpf.ffi, libbpf.lib()
        key = ffi.new("char[]", self.key_size)
        nxt = ffi.new("char[]", self.key_size)
        val = ffi.new("char[]", self.value_stride)
        kbuf, vbuf, count = bytearray(), bytearray(), 0
        rc = lib.bpf_map_get_next_key(self.fd, ffi.NULL, nxt)
        while rc == 0 and count <= self.max_entries:
            if lib.bpf_map_lookup_elem(self.fd, nxt, val) == 0:
                kbuf += ffi.buffer(nxt, self.key_size)
                vbuf += ffi.buffer(val, self.value_stride)
                count += 1
            ffi.memmove(key, nxt, self.key_size)
            rc = lib.bpf_map_get_next_key(self.fd, key, nxt)
        return MapRead(bytes(kbuf), bytes(vbuf), count, self.key_size, self.value_stride)

    def delete(self, key: bytes) -> bool:
        """Delete one entry; False when it was already gone (deleted meanwhile)."""
        rc = libbpf.lib().bpf_map_delete_elem(self.fd, key)
        if rc == 0:
            return True
        if -rc == errno.ENOENT:
            return False
        raise MapError(self._what("delete"), rc, remedy=remedy_for(rc))

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        rc = libbpf.lib().bpf_map_update_elem(self.fd, key, value, flags)
        if rc < 0:
            raise MapError(self._what("update"), rc, remedy=remedy_for(rc))


class _BatchUnsupported(Exception):
    pass


def u64_key(raw: bytes) -> int:
    """The u64 key (a cgroup id) of a map entry read back as bytes."""
    return int.from_bytes(raw[:8], "little")

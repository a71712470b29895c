"""Metric maps declared once, decoded by one generic decoder.

A `MapSpec` says what a BPF metric map holds and where each number goes: the map's
name, its key and value structs (the generated mirrors of bpf/structs.py) and which
value fields feed which family with which labels. (Its index in the object's health
ARRAY, a generated enum member, is given once, in the collector's `metric_maps`.) `MapDecoder` turns
one snap-and-reset read of such a map into samples; collectors keep only what is
truly theirs (attach quirks, state such as a running gauge).

A new kernel counter is therefore: the field in ebpf/kpod_shared.h and the program
that bumps it, one `Count` entry in the collector's spec, and its test.

Semantics shared by every map: values are deltas since the last read; a zero counter
and an empty histogram produce no sample (an idle cgroup costs nothing downstream).
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kpodmetrics.bpf.maps import MapRead
from kpodmetrics.bpf.structs import KPOD_HIST_SLOTS, KpodHist
from kpodmetrics.families import Family, FamilyType
from kpodmetrics.samples import HistogramSample, Labels, Sample


@dataclass(frozen=True, slots=True)
class Count:
    """A value field (dotted path, e.g. "nvcsw") added to a counter family."""

    field: str
    family: Family
    labels: Labels = ()


@dataclass(frozen=True, slots=True)
class Hist:
    """A `struct kpod_hist` field feeding a histogram family; `count`, when set, is a
    counter family that also receives the histogram's number of samples."""

    field: str
    family: Family
    count: Family | None = None


@dataclass(frozen=True, slots=True)
class MapSpec:
    """One metric map: key cgroup_id (u64, or `cgroup_field` of a key struct)."""

    map: str
    value: type[ctypes.Structure]
    fields: tuple[Count | Hist, ...]
    key: type[ctypes.Structure] | None = None
    """Key struct; None: the key is the u64 cgroup id itself."""
    cgroup_field: str = "cgroup_id"
    key_labels: tuple[tuple[str, str], ...] = ()
    """(key member, label name) pairs: labels taken from the key, put first, in this
    order (e.g. ("nr", "syscall")); MapDecoder is told how to name each value."""
    raw: tuple[str, ...] = ()
    """Value fields handed back to the collector as numbers instead of samples."""
    key_raw: tuple[str, ...] = ()
    """Key members handed back with them, before the value fields (e.g. the other
    cgroup id of a key naming a pair of cgroups)."""

    def __post_init__(self) -> None:
        if (self.key_labels or self.key_raw) and self.key is None:
            raise ValueError(f"{self.map}: key labels and key_raw need a key struct")
        for f in self.fields:
            want = FamilyType.HISTOGRAM if isinstance(f, Hist) else FamilyType.COUNTER
            if f.family.type is not want:
                raise ValueError(f"{self.map}.{f.field}: {f.family.name} is a "
                                 f"{f.family.type.value}, expected a {want.value}")
            label_keys = tuple(k for k, _ in f.labels) if isinstance(f, Count) else ()
            label_keys = (*(name for _, name in self.key_labels), *label_keys)
            fams = (f.family, f.count) if isinstance(f, Hist) and f.count else (f.family,)
            for fam in fams:
                if label_keys != fam.label_names:
                    raise ValueError(f"{self.map}.{f.field}: labels {label_keys} do not match "
                                     f"{fam.name}{fam.label_names}")

    @property
    def families(self) -> tuple[Family, ...]:
        out: list[Family] = []
        for f in self.fields:
            for fam in (f.family, f.count if isinstance(f, Hist) else None):
                if fam is not None and fam not in out:
                    out.append(fam)
        return tuple(out)


@dataclass(slots=True)
class Decoded:
    samples: list[Sample | HistogramSample] = field(default_factory=list)
    raw: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)
    """(cgroup id, key members of spec.key_raw + values of spec.raw) for every entry,
    in read order."""
    unlabeled: int = 0
    """Entries skipped because their key's label value was named None by its label_of."""


_CODES = {(1, False): "B", (2, False): "H", (4, False): "I", (8, False): "Q",
          (1, True): "b", (2, True): "h", (4, True): "i", (8, True): "q"}
_SIGNED = {ctypes.c_int8, ctypes.c_int16, ctypes.c_int32, ctypes.c_int64}


def _leaves(cls: type[ctypes.Structure], base: int = 0,
            prefix: str = "") -> list[tuple[str, int, str]]:
    """(dotted path, byte offset, struct code) of every scalar of a ctypes struct;
    arrays become one leaf per element (`path[i]`)."""
    out: list[tuple[str, int, str]] = []
    for name, ctype in cls._fields_:  # type: ignore[misc]
        off = base + getattr(cls, name).offset
        path = f"{prefix}{name}"
        t: Any = ctype
        if issubclass(t, ctypes.Structure):
            out += _leaves(t, off, path + ".")
        elif issubclass(t, ctypes.Array):
            elem: Any = t._type_
            size = ctypes.sizeof(elem)
            code = _CODES[(size, elem in _SIGNED)]
            out += [(f"{path}[{i}]", off + i * size, code) for i in range(t._length_)]
        else:
            out.append((path, off, _CODES[(ctypes.sizeof(t), t in _SIGNED)]))
    return out


def _layout(cls: type[ctypes.Structure]) -> tuple[struct.Struct, dict[str, int]]:
    """One Struct unpacking the whole value, and each leaf path's index in its tuple."""
    fmt, pos, index = ["<"], 0, {}
    for i, (path, off, code) in enumerate(sorted(_leaves(cls), key=lambda x: x[1])):
        if off > pos:
            fmt.append(f"{off - pos}x")
        fmt.append(code)
        pos = off + struct.calcsize(code)
        index[path] = i
    size = ctypes.sizeof(cls)
    if size > pos:
        fmt.append(f"{size - pos}x")
    return struct.Struct("".join(fmt)), index


class MapDecoder:
    """Decodes reads of one MapSpec; offsets are computed once, every entry is one
    `struct.unpack` of its key and one of its value."""

    def __init__(self, spec: MapSpec,
                 label_of: Mapping[str, Callable[[int], str | None]] | None = None) -> None:
        """`label_of`: per key label name, the label value of a key member's number
        (e.g. "syscall": {257: "openat"}.get); an entry for which one answers None is
        skipped and counted in `Decoded.unlabeled`."""
        self.spec = spec
        label_of = dict(label_of or {})
        missing = [name for _, name in spec.key_labels if name not in label_of]
        if missing:
            raise ValueError(f"{spec.map}: no label_of for key labels {missing}")
        self._value, vidx = _layout(spec.value)
        self._labs: list[tuple[int, str, Callable[[int], str | None]]] = []
        self._key_raw: list[int] = []
        if spec.key is None:
            self._key, self._cg = struct.Struct("<Q"), 0
        else:
            self._key, kidx = _layout(spec.key)
            self._cg = kidx[spec.cgroup_field]
            self._labs = [(kidx[member], name, label_of[name]) for member, name in spec.key_labels]
            self._key_raw = [kidx[member] for member in spec.key_raw]
        self._counts: list[tuple[Family, int, Labels]] = []
        self._hists: list[tuple[Family, int, int, Family | None]] = []
        for f in spec.fields:
            if isinstance(f, Count):
                self._counts.append((f.family, vidx[f.field], f.labels))
            else:
                first = vidx[f"{f.field}.slots[0]"]
                if vidx[f"{f.field}.slots[{KPOD_HIST_SLOTS - 1}]"] != first + KPOD_HIST_SLOTS - 1:
                    raise ValueError(f"{spec.map}.{f.field}: not a struct kpod_hist")
                self._hists.append((f.family, first, vidx[f"{f.field}.sum"], f.count))
        self._raw = [vidx[r] for r in spec.raw]
        assert ctypes.sizeof(KpodHist) == (KPOD_HIST_SLOTS + 2) * 8

    def decode(self, read: MapRead) -> Decoded:
        if read.value_stride != self._value.size or read.key_size != self._key.size:
            raise ValueError(
                f"{self.spec.map}: read has key/value {read.key_size}/{read.value_stride} "
                f"bytes, the spec's structs {self._key.size}/{self._value.size}")
        out = Decoded()
        samples = out.samples
        nslots = KPOD_HIST_SLOTS
        keys = self._key.iter_unpack(read.keys[: read.count * read.key_size])
        values = self._value.iter_unpack(read.values[: read.count * read.value_stride])
        # the label tuple of each distinct combination of labelled key members, made once
        # per read: at 1,000 cgroups the same few (device, op) or syscall numbers repeat
        # for every cgroup. Only per read, because label_of may learn a name later.
        labelled: dict[tuple[int, ...], Labels | None] = {}
        members = [i for i, _, _ in self._labs]
        for k, v in zip(keys, values, strict=True):
            cg = k[self._cg]
            pre: Labels = ()
            if self._labs:
                raw_key = tuple(k[i] for i in members)
                if raw_key in labelled:
                    got_pre = labelled[raw_key]
                else:
                    got = [(name, fn(k[i])) for i, name, fn in self._labs]
                    got_pre = None if any(x is None for _, x in got) else \
                        tuple(got)  # type: ignore[arg-type]  # no None left
                    labelled[raw_key] = got_pre
                if got_pre is None:
                    out.unlabeled += 1
                    continue
                pre = got_pre
            for fam, i, labels in self._counts:
                if v[i]:
                    samples.append(Sample(fam, cg, float(v[i]), labels=pre + labels))
            for fam, first, total, count_fam in self._hists:
                slots = v[first: first + nslots]
                if any(slots):
                    if count_fam is not None:
                        samples.append(Sample(count_fam, cg, float(sum(slots)), labels=pre))
                    samples.append(HistogramSample(fam, cg, slots, v[total], labels=pre))
            if self._raw or self._key_raw:
                out.raw.append((cg, tuple(k[i] for i in self._key_raw)
                                + tuple(v[i] for i in self._raw)))
        return out


def families_of(specs: Sequence[MapSpec]) -> tuple[Family, ...]:
    """Every family the specs feed, in declaration order."""
    out: list[Family] = []
    for spec in specs:
        out += [f for f in spec.families if f not in out]
    return tuple(out)

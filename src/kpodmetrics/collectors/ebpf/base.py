"""Shared life cycle of the eBPF collectors: load, attach, health, close.

A subclass names its object, its metric maps (with their health index in the
object's health ARRAY), the signals its programs feed (each with its variants, in
order of preference: bpf/variants.py) and decodes entries; this class handles
everything else: choosing variants, turning load/attach failures into
`CollectorUnavailable`, and saying per signal what feeds it (`signal_states`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from kpodmetrics.bpf.errors import BpfError
from kpodmetrics.bpf.libbpf import LibbpfMissing
from kpodmetrics.bpf.loader import BpfObject, LoadOptions
from kpodmetrics.bpf.maps import MapRead
from kpodmetrics.bpf.structs import KpodMapHealth
from kpodmetrics.bpf.variants import Signal, SignalState
from kpodmetrics.collectors.base import CollectorUnavailable, MapHealth, ProgramStatus

_log = logging.getLogger(__name__)


class BpfCollectorBase:
    """Owns one BpfObject. Subclasses set `name`, `object_name`, `health_map`,
    `metric_maps` (map name -> health index) and implement `collect`."""

    name = ""
    object_name = ""
    health_map = ""
    metric_maps: Mapping[str, int] = {}
    signals: tuple[Signal, ...] = ()
    """Signals fed by this object's programs; programs named in none load on their own."""

    def __init__(self, *, legacy_maps: bool = False, max_entries: Mapping[str, int] | None = None,
                 rodata: bytes | None = None, only: frozenset[str] | None = None,
                 variants: Mapping[str, str] | None = None) -> None:
        self.obj: BpfObject | None = None
        self._opts = LoadOptions(max_entries=dict(max_entries or {}), rodata=rodata, only=only,
                                 legacy_maps=legacy_maps, signals=self.signals,
                                 forced_variants=dict(variants or {}))
        self._signal_states: list[SignalState] = []
        self._entries: dict[str, int] = {}
        self._read_total: dict[str, int] = {}
        self._evicted: dict[str, int] = {}

    def force_variants(self, forced: Mapping[str, str]) -> None:
        """Pin this collector's signals named in `forced` (signal -> variant,
        KPOD_BPF_VARIANTS) to that variant, with no fallback. Before start."""
        mine = {s.name for s in self.signals}
        self._opts.forced_variants = {**self._opts.forced_variants,
                                      **{k: v for k, v in forced.items() if k in mine}}

    # -- life cycle ----------------------------------------------------------------

    def start(self) -> None:
        try:
            obj = BpfObject(self.object_name, opts=self._opts).load()
            self.obj = obj
            self.attach(obj)
            # a variant the kernel loads but will not attach gives way to the next one
            while obj.refused_variants():
                obj.reload_without_refused()
                self.attach(obj)
        except (BpfError, LibbpfMissing, OSError) as exc:
            self.close()
            raise CollectorUnavailable(str(exc)) from exc
        self._signal_states = obj.settle_signals()
        for st in self._signal_states:
            if st.variant is None:
                _log.warning("%s: signal %s cannot be seen on this kernel: %s",
                             self.name, st.signal.name, st.reason)
            elif st.failures:
                _log.info("%s: signal %s uses variant %s (%s)", self.name, st.signal.name,
                          st.variant, st.reason)
        if not obj.attached:
            reasons = "; ".join(f"{n}: {st.reason}" for n, st in obj.programs.items())
            obj.close()
            self.obj = None
            raise CollectorUnavailable(f"no program of {self.object_name} attached ({reasons})")

    def attach(self, obj: BpfObject) -> None:
        """Attach the programs; perf-event collectors override this."""
        obj.attach()

    def close(self) -> None:
        if self.obj is not None:
            self.obj.close()
            self.obj = None

    # -- reading -------------------------------------------------------------------

    def read_map(self, name: str) -> MapRead:
        """Snap and reset one map; for metric maps also account for LRU evictions.

        An LRU map that is full evicts silently: the insert succeeds, an older entry
        (with its counts) is gone. Every entry alive at a read was inserted since the
        previous read and is deleted by this one, so inserts minus entries read is what
        was evicted. Reading the insert counter *before* the map makes the figure a
        lower bound (inserts in between are read but not yet counted): it never claims
        a loss that did not happen."""
        assert self.obj is not None, f"{self.name}: collect before start"
        idx = self.metric_maps.get(name)
        written = self._inserts(idx) if idx is not None and self.health_map else None
        read = self.obj.map(name).read_and_reset()
        self._entries[name] = read.count
        if written is not None:
            self._read_total[name] = self._read_total.get(name, 0) + read.count
            bound = written - self._read_total[name]
            self._evicted[name] = max(self._evicted.get(name, 0), bound)
        return read

    def _inserts(self, idx: int) -> int:
        assert self.obj is not None
        raw = self.obj.map(self.health_map).read_all()
        for k, v in raw.items():
            if int.from_bytes(k, "little") == idx:
                return int(KpodMapHealth.from_buffer_copy(v).entries_written)
        return 0

    def signal_states(self) -> Sequence[SignalState]:
        """Per declared signal: the variant in use, or None with each variant's reason.
        Empty before start and for collectors that declare no signals."""
        return list(self._signal_states)

    def programs(self) -> Sequence[ProgramStatus]:
        if self.obj is None:
            return []
        return [ProgramStatus(n, st.attached, st.reason) for n, st in self.obj.programs.items()]

    def program_fds(self) -> dict[str, int]:
        if self.obj is None:
            return {}
        return {n: self.obj.program_fd(n) for n, st in self.obj.programs.items() if st.loaded}

    def health_maps(self) -> Mapping[str, int]:
        """Map name -> health index to report: `metric_maps`, unless a variant in use
        keeps a slot's map under another name (the syscall start map)."""
        return self.metric_maps

    def map_health(self) -> Sequence[MapHealth]:
        if self.obj is None or not self.health_map:
            return []
        raw = self.obj.map(self.health_map).read_all()
        by_index = {
            int.from_bytes(k, "little"): KpodMapHealth.from_buffer_copy(v)
            for k, v in raw.items()
        }
        out = []
        for map_name, idx in self.health_maps().items():
            h = by_index.get(idx)
            m = self.obj.maps.get(map_name)
            if m is None:
                continue
            out.append(MapHealth(
                map=map_name,
                capacity=m.max_entries or None,
                entries=self._entries.get(map_name),
                entries_written=int(h.entries_written) if h else 0,
                update_errors=int(h.update_errors) if h else 0,
                evicted_at_least=self._evicted.get(map_name, 0),
            ))
        return out

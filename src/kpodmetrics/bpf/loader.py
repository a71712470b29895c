"""Open, probe, load and attach one CO-RE object; close it cleanly.

Every program is probed before load; a program whose hook is missing, that the
verifier rejects or that cannot attach is switched off on its own and reported with
its reason, so one missing hook never takes the rest of the object down. Programs
that are variants of one signal (bpf/variants.py) are chosen here: the first variant
whose programs all probe, load and attach wins, and only its programs stay loaded.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from kpodmetrics.bpf import features, libbpf
from kpodmetrics.bpf.errors import BpfError, ObjectNotFound, ProgramLoadError, remedy_for
from kpodmetrics.bpf.maps import BpfMap
from kpodmetrics.bpf.variants import (
    Signal,
    SignalState,
    Variant,
    VariantChooser,
    check_signals,
    maps_to_skip,
)

_log = logging.getLogger(__name__)


OBJECT_DIRS = {"x86_64": ("objects",), "aarch64": ("objects", "arm64")}
"""Where each machine architecture's prebuilt objects are shipped (Makefile `bpf`)."""


def object_path(name: str, machine: str | None = None) -> str:
    """Path of a prebuilt object shipped as package data (`cpu_sched` -> .../cpu_sched.bpf.o),
    for this machine's architecture (objects are CO-RE but not architecture-neutral)."""
    override = os.environ.get("KPOD_BPF_DIR")
    if override:
        return os.path.join(override, f"{name}.bpf.o")
    machine = machine or platform.machine()
    parts = OBJECT_DIRS.get(machine)
    if parts is None:
        raise ObjectNotFound(f"BPF object {name}", errno.ENOEXEC,
                             f"no prebuilt objects for machine {machine!r}",
                             f"objects ship for {', '.join(OBJECT_DIRS)}")
    return str(resources.files("kpodmetrics.bpf").joinpath(*parts, f"{name}.bpf.o"))


@functools.lru_cache(maxsize=64)
def map_type_supported(map_type: int) -> bool:
    """Whether this kernel can create maps of `map_type` (libbpf's probe; asked once)."""
    return int(libbpf.lib().libbpf_probe_bpf_map_type(map_type, libbpf.ffi.NULL)) == 1


@dataclass(slots=True)
class ProgramState:
    """What became of one program."""

    name: str
    section: str
    loaded: bool = False
    attached: bool = False
    reason: str = ""
    attach_error: str = ""
    """Set by `attach` when the kernel refused the link (the program stays loaded)."""


@dataclass
class LoadOptions:
    max_entries: Mapping[str, int] = field(default_factory=dict)
    rodata: bytes | None = None
    """Initial bytes of the .rodata section (const volatile settings), if any."""
    only: frozenset[str] | None = None
    """Load only these programs (None: all that probe well)."""
    legacy_maps: bool = False
    signals: Sequence[Signal] = ()
    """Signals whose variants this object holds; programs in none load on their own."""
    forced_variants: Mapping[str, str] = field(default_factory=dict)
    """signal -> variant to use (no fallback): for tests and diagnosis."""


class BpfObject:
    """One loaded CO-RE object with its programs, links and maps."""

    def __init__(self, name: str, path: str | None = None, opts: LoadOptions | None = None) -> None:
        self.name = name
        self.path = path or object_path(name)
        self.opts = opts or LoadOptions()
        self.programs: dict[str, ProgramState] = {}
        self.maps: dict[str, BpfMap] = {}
        self._obj: Any = None
        self._progs: dict[str, Any] = {}
        self._map_handles: dict[str, Any] = {}
        """map name -> libbpf handle of the object opened last (valid until it closes)."""
        self._map_names: set[str] = set()
        self._links: list[Any] = []
        self._chooser = VariantChooser(self.opts.signals, self.opts.forced_variants)
        self._chosen: dict[str, Variant] = {}
        self._single: dict[str, str] = {}
        """program -> "" when it loads alone, else the verifier's reason (asked once)."""

    # -- life cycle ----------------------------------------------------------------

    def load(self) -> BpfObject:
        """Probe, load (dropping programs that fail) and collect the maps."""
        if not os.path.isfile(self.path):
            raise ObjectNotFound(
                f"BPF object {self.name}", errno.ENOENT, self.path,
                "reinstall the package or run `make bpf` to rebuild the objects",
            )
        if not features.has_vmlinux_btf():
            raise BpfError(
                f"BPF object {self.name}", errno.ENOENT,
                "this kernel has no BTF at /sys/kernel/btf/vmlinux",
                "CO-RE objects need a kernel built with CONFIG_DEBUG_INFO_BTF=y",
            )
        probed = self._probe_all()
        check_signals(self.opts.signals, self.programs, self._map_names)
        in_signal = {p for sig in self.opts.signals for p in sig.programs}
        free = probed - in_signal
        failures: dict[str, str] = {}
        while True:
            self._chosen = self._chooser.choose(lambda p: self._unusable(p, probed))
            wanted = free | {p for v in self._chosen.values() for p in v.programs}
            alone = {p: why for p, why in self._single.items() if why}
            if not wanted and alone:
                # every program the probes let through was refused by the kernel
                detail = "; ".join(f"{p}: {why}" for p, why in sorted(alone.items()))
                raise ProgramLoadError(f"BPF object {self.name}", errno.EINVAL, detail,
                                       remedy_for(errno.EPERM if "EPERM" in detail else errno.EINVAL))
            ok, log = self._try_load(wanted)
            if ok:
                break
            # find out which programs the kernel refuses, one at a time
            self._close_obj()
            bad = {p: why for p in sorted(wanted) if (why := self._load_alone(p))}
            if not bad:  # nothing to blame on one program: the object itself cannot load
                detail = log if len(wanted) < 2 else f"programs load alone but not together: {log}"
                raise ProgramLoadError(f"BPF object {self.name}", errno.EINVAL, detail,
                                       remedy_for(errno.EPERM if "EPERM" in log else errno.EINVAL))
            for prog in bad.keys() & free:
                free.discard(prog)
                failures[prog] = bad[prog]
            for sig, v in self._chosen.items():
                refused = [p for p in v.programs if p in bad]
                if refused:
                    self._chooser.fail(sig, v.name, f"{refused[0]}: load failed: {bad[refused[0]]}")
        for prog, why in failures.items():
            st = self.programs[prog]
            st.reason = f"load failed: {why}"
            _log.warning("%s: program %s disabled: %s", self.name, prog, st.reason)
        self._explain_unchosen(in_signal - wanted)
        for prog in wanted:
            self.programs[prog].loaded = True
        lib = libbpf.lib()
        m = lib.bpf_object__next_map(self._obj, libbpf.ffi.NULL)
        while m != libbpf.ffi.NULL:
            bm = BpfMap(m, self.name, legacy=self.opts.legacy_maps)
            # skip .rodata/.bss/.data (named <obj>.rodata) and maps not created here
            if "." not in bm.name and bm.fd >= 0:
                self.maps[bm.name] = bm
            m = lib.bpf_object__next_map(self._obj, m)
        return self

    def _open(self) -> None:
        lib, ffi = libbpf.lib(), libbpf.ffi
        obj = lib.bpf_object__open_file(self.path.encode(), ffi.NULL)
        err = lib.libbpf_get_error(obj) if obj != ffi.NULL else -(ffi.errno or errno.EINVAL)
        if obj == ffi.NULL or err:
            raise BpfError(f"BPF object {self.name}: open {self.path}", int(err),
                           remedy=remedy_for(int(err)))
        self._obj = obj
        self._progs.clear()
        p = lib.bpf_object__next_program(obj, ffi.NULL)
        while p != ffi.NULL:
            name = ffi.string(lib.bpf_program__name(p)).decode()
            self._progs[name] = p
            if name not in self.programs:
                sec = ffi.string(lib.bpf_program__section_name(p)).decode()
                self.programs[name] = ProgramState(name, sec)
            p = lib.bpf_object__next_program(obj, p)
        self._map_handles.clear()
        m = lib.bpf_object__next_map(obj, ffi.NULL)
        while m != ffi.NULL:
            mname = ffi.string(lib.bpf_map__name(m)).decode()
            self._map_handles[mname] = m
            self._map_names.add(mname)
            if mname in self.opts.max_entries:
                rc = lib.bpf_map__set_max_entries(m, int(self.opts.max_entries[mname]))
                if rc < 0:
                    raise BpfError(f"map {mname} of {self.name}: set_max_entries", rc)
            if self.opts.rodata is not None and mname.endswith(".rodata"):
                rc = lib.bpf_map__set_initial_value(m, self.opts.rodata, len(self.opts.rodata))
                if rc < 0:
                    raise BpfError(f"map {mname} of {self.name}: set_initial_value", rc,
                                   f"{len(self.opts.rodata)} bytes given")
            if not map_type_supported(int(lib.bpf_map__type(m))):
                # e.g. task storage before 5.11: only the variant that needs it fails
                # (its programs are refused at load), not the whole object
                lib.bpf_map__set_autocreate(m, False)
            m = lib.bpf_object__next_map(obj, m)

    def _unusable(self, prog: str, probed: set[str]) -> str:
        """"" if `prog` may be tried, else why not (probe or a lone load failed)."""
        if prog not in probed:
            return self.programs[prog].reason or "not requested"
        why = self._single.get(prog, "")
        return f"load failed: {why}" if why else ""

    def _load_alone(self, prog: str) -> str:
        if prog not in self._single:
            ok, log = self._try_load({prog})
            self._close_obj()
            self._single[prog] = "" if ok else (log or "load failed")
        return self._single[prog]

    def _explain_unchosen(self, progs: Iterable[str]) -> None:
        """Programs of signals that stay unloaded say which variant won, or why none did."""
        for sig in self.opts.signals:
            chosen = self._chosen.get(sig.name)
            for prog in set(progs) & sig.programs:
                st = self.programs[prog]
                if chosen is not None:
                    st.reason = f"not needed: signal {sig.name} uses variant {chosen.name}"
                elif not st.reason:
                    st.reason = f"signal {sig.name}: no variant works"

    def _probe_all(self) -> set[str]:
        self._open()
        wanted: set[str] = set()
        for name, st in self.programs.items():
            if self.opts.only is not None and name not in self.opts.only:
                st.reason = "not requested"
                continue
            probe = features.probe_section(st.section)
            if probe.ok:
                wanted.add(name)
            else:
                st.reason = probe.reason
                _log.warning("%s: program %s (%s) disabled: %s", self.name, name, st.section,
                             probe.reason)
        self._close_obj()
        return wanted

    def _try_load(self, wanted: set[str]) -> tuple[bool, str]:
        self._open()
        lib = libbpf.lib()
        for name, p in self._progs.items():
            lib.bpf_program__set_autoload(p, name in wanted)
        skip = maps_to_skip(self.opts.signals, wanted)
        for mname, m in self._map_handles.items():
            if mname in skip:
                lib.bpf_map__set_autocreate(m, False)
        with libbpf.capture_log() as lines:
            rc = lib.bpf_object__load(self._obj)
        if rc < 0:
            tail = " | ".join(line for line in lines[-4:] if line)
            return False, f"{errno.errorcode.get(-rc, str(-rc))}: {tail}"
        return True, ""

    def attach(self, skip: Iterable[str] = ()) -> None:
        """Attach every loaded program except `skip` (e.g. perf-event programs)."""
        lib, ffi = libbpf.lib(), libbpf.ffi
        skip_set = set(skip)
        for name, st in self.programs.items():
            if not st.loaded or name in skip_set or st.section.startswith("perf_event"):
                continue
            link = lib.bpf_program__attach(self._progs[name])
            err = lib.libbpf_get_error(link) if link != ffi.NULL else -(ffi.errno or errno.EINVAL)
            if link == ffi.NULL or err:
                st.reason = st.attach_error = f"attach failed: {errno.errorcode.get(-err, str(-err))}"
                _log.warning("%s: program %s disabled: %s", self.name, name, st.reason)
                continue
            self._links.append(link)
            st.attached = True

    def refused_variants(self) -> dict[str, str]:
        """Chosen variants with a program the kernel would not attach: signal -> reason.

        After `attach`, a non-empty answer means those variants must go: call
        `reload_without_refused()` and attach again."""
        out: dict[str, str] = {}
        for sig, v in self._chosen.items():
            bad = [p for p in v.programs if self.programs[p].attach_error]
            if bad:
                out[sig] = f"{bad[0]}: {self.programs[bad[0]].attach_error}"
        return out

    def reload_without_refused(self) -> BpfObject:
        """Close everything, rule out the variants that failed to attach, load again."""
        for sig, why in self.refused_variants().items():
            self._chooser.fail(sig, self._chosen[sig].name, why)
        self.close()
        for st in self.programs.values():
            st.loaded = st.attached = False
            st.reason = st.attach_error = ""
        return self.load()

    def settle_signals(self) -> list[SignalState]:
        """Final state per signal: a variant is in use only if all its programs attached."""
        for sig, v in self._chosen.items():
            state = self._chooser.states[sig]
            unattached = [p for p in v.programs if not self.programs[p].attached]
            if unattached:
                st = self.programs[unattached[0]]
                self._chooser.fail(sig, v.name, f"{unattached[0]}: {st.reason or 'not attached'}")
                state.variant = None
            else:
                state.variant = v.name
        return list(self._chooser.states.values())

    def attach_perf_event(self, prog: str, perf_fd: int) -> None:
        """Attach a perf_event program to an open perf event fd (one per CPU)."""
        lib, ffi = libbpf.lib(), libbpf.ffi
        link = lib.bpf_program__attach_perf_event(self._progs[prog], perf_fd)
        err = lib.libbpf_get_error(link) if link != ffi.NULL else -(ffi.errno or errno.EINVAL)
        if link == ffi.NULL or err:
            raise BpfError(f"program {prog} of {self.name}: attach_perf_event", int(err))
        self._links.append(link)
        self.programs[prog].attached = True

    def program_fd(self, prog: str) -> int:
        return int(libbpf.lib().bpf_program__fd(self._progs[prog]))

    def _close_obj(self) -> None:
        if self._obj is not None:
            libbpf.lib().bpf_object__close(self._obj)
            self._obj = None
            self._progs.clear()
            self._map_handles.clear()

    def close(self) -> None:
        """Destroy links, then close the object: nothing of ours stays loaded."""
        lib = libbpf.lib()
        for link in self._links:
            lib.bpf_link__destroy(link)
        self._links.clear()
        for st in self.programs.values():
            st.attached = False
        self.maps.clear()
        self._close_obj()

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def map(self, name: str) -> BpfMap:
        try:
            return self.maps[name]
        except KeyError:
            raise BpfError(f"BPF object {self.name}", errno.ENOENT, f"no map named {name}") from None

    @property
    def attached(self) -> list[str]:
        return [n for n, st in self.programs.items() if st.attached]

"""Signals and their program variants: the first variant that works on this kernel wins.

A signal (run-queue latency, TCP bytes, ...) can often be fed by several hooks: a
BTF-typed tracepoint where this kernel's signature fits, a raw tracepoint, an fentry
or kprobe on a kernel function where no tracepoint carries the event. Each variant is
the set of programs that must *all* probe, pass the verifier and attach; variants are
tried in order and exactly one wins, so a signal is never counted twice. When none
works the signal is "cannot see here", with the reason each variant failed: the export
says so per family instead of reporting zeros.

This module only decides; `loader.BpfObject` does the loading and attaching.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from kpodmetrics.families import Family


@dataclass(frozen=True, slots=True)
class Variant:
    """One way of feeding a signal: programs (function names) that go together."""

    name: str
    programs: tuple[str, ...]
    maps: tuple[str, ...] = ()
    """Maps that only this variant's programs use (others of the same signal may list
    them too): the loader creates them only when a variant listing them loads, so an
    unchosen variant costs no kernel memory. A map a loaded program needs but that was
    not created makes that program fail the verifier: a wrong list cannot go unseen
    (tests/unit/test_variant_maps.py checks the lists against the objects)."""

    def __post_init__(self) -> None:
        if not self.programs:
            raise ValueError(f"variant {self.name!r} names no program")


@dataclass(frozen=True, slots=True)
class Signal:
    """A kernel signal, the families it feeds and its variants in order of preference."""

    name: str
    families: tuple[Family, ...]
    variants: tuple[Variant, ...]

    def __post_init__(self) -> None:
        if not self.variants:
            raise ValueError(f"signal {self.name!r} has no variant")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"signal {self.name!r}: variant names repeat: {names}")

    @property
    def programs(self) -> frozenset[str]:
        return frozenset(p for v in self.variants for p in v.programs)

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        known = ", ".join(v.name for v in self.variants)
        raise KeyError(f"signal {self.name!r} has no variant {name!r} (known: {known})")


def check_signals(signals: Sequence[Signal], programs: Collection[str],
                  maps: Collection[str]) -> None:
    """Refuse declarations that name programs (or maps) the object lacks, or that share
    a program between two signals (the loader could then attach a loser's program)."""
    owner: dict[str, str] = {}
    for sig in signals:
        for v in sig.variants:
            missing = [m for m in v.maps if m not in maps]
            if missing:
                raise ValueError(f"signal {sig.name!r} variant {v.name!r} names map "
                                 f"{missing[0]!r}, which the object does not contain")
        for prog in sig.programs:
            if prog not in programs:
                raise ValueError(f"signal {sig.name!r} names program {prog!r}, "
                                 f"which the object does not contain")
            other = owner.setdefault(prog, sig.name)
            if other != sig.name:
                raise ValueError(f"program {prog!r} is in signals {other!r} and {sig.name!r}")


@dataclass
class SignalState:
    """What became of one signal after start-up."""

    signal: Signal
    variant: str | None = None
    """The variant in use, None when no variant works here."""
    failures: dict[str, str] = field(default_factory=dict)
    """Why each variant that was tried (or ruled out) does not work: variant -> reason."""

    @property
    def available(self) -> bool:
        return self.variant is not None

    @property
    def programs(self) -> tuple[str, ...]:
        return self.signal.variant(self.variant).programs if self.variant else ()

    @property
    def reason(self) -> str:
        """One line: why the signal cannot be seen, or which variants were passed over."""
        return "; ".join(f"{v}: {why}" for v, why in self.failures.items())


class VariantChooser:
    """Keeps, per signal, which variants have failed and which one to try next.

    `forced` pins a signal to one named variant (tests and `--bpf-variant`): the others
    are ruled out up front, so a forced variant that fails leaves the signal dark
    rather than silently falling back."""

    def __init__(self, signals: Sequence[Signal], forced: Mapping[str, str] | None = None) -> None:
        self.states = {s.name: SignalState(s) for s in signals}
        for sig_name, var_name in (forced or {}).items():
            st = self.states.get(sig_name)
            if st is None:
                raise KeyError(f"no signal {sig_name!r} to force (known: {', '.join(self.states)})")
            st.signal.variant(var_name)  # raises for an unknown variant
            for v in st.signal.variants:
                if v.name != var_name:
                    st.failures[v.name] = f"not tried (variant {var_name} forced)"

    def fail(self, signal: str, variant: str, reason: str) -> None:
        self.states[signal].failures[variant] = reason

    def choose(self, usable: Callable[[str], str]) -> dict[str, Variant]:
        """The first variant of each signal not yet failed whose programs are all usable.

        `usable(program)` returns "" when the program may be tried, else the reason it
        cannot (probe failure); variants ruled out that way are recorded as failed."""
        chosen: dict[str, Variant] = {}
        for name, st in self.states.items():
            st.variant = None
            for v in st.signal.variants:
                if v.name in st.failures:
                    continue
                why = next((f"{p}: {r}" for p in v.programs if (r := usable(p))), "")
                if why:
                    st.failures[v.name] = why
                    continue
                chosen[name] = v
                break
        return chosen


def maps_to_skip(signals: Sequence[Signal], loading: Collection[str]) -> frozenset[str]:
    """Maps listed by variants none of whose programs is in `loading`: not to be created.

    A map listed by several variants is kept as soon as one of them has a program
    loading (a lone-program load during diagnosis keeps its own variant's maps)."""
    listed: dict[str, bool] = {}
    for sig in signals:
        for v in sig.variants:
            used = any(p in loading for p in v.programs)
            for m in v.maps:
                listed[m] = listed.get(m, False) or used
    return frozenset(m for m, used in listed.items() if not used)

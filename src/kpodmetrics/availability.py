"""Which families have a source on this node: through which program variant, or why not.

"Cannot see here" must never look like "nothing happened": a family whose every
signal lacks a working program variant is reported unavailable (with each variant's
reason) and is not declared in the export, so no HELP/TYPE without series pretends
to be zero events. One report per collector, computed once at start-up (variants are
chosen then and never change), feeds `kpod-metrics probe`, `kpod_signal_info`,
`kpod_collector_state` and the landing page.

States: `up` every family has a source; `degraded` some have none; `down` none has
(the collector did not start, or every signal is dark).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from kpodmetrics.bpf.variants import SignalState
from kpodmetrics.families import Family


class State(enum.Enum):
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class FamilySource:
    """Where one family's data comes from on this node."""

    family: Family
    collector: str
    available: bool
    signal: str = ""
    """The signal feeding it ("" for families outside any declared signal)."""
    variant: str = ""
    """The program variant in use ("" when unavailable or not a BPF signal)."""
    programs: tuple[str, ...] = ()
    reason: str = ""
    """Why it is unavailable, or which variants were passed over to reach `variant`."""

    def as_json(self) -> dict[str, object]:
        return {"available": self.available, "collector": self.collector,
                "signal": self.signal, "program": ",".join(self.programs),
                "variant": self.variant, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class CollectorReport:
    name: str
    state: State
    reason: str
    """Why the collector is down, or which signals are dark."""
    sources: tuple[FamilySource, ...]
    signals: tuple[SignalState, ...] = ()

    @property
    def live_families(self) -> tuple[Family, ...]:
        return tuple(s.family for s in self.sources if s.available)


def report(name: str, families: Sequence[Family], signals: Sequence[SignalState],
           *, started: bool, reason: str = "") -> CollectorReport:
    """The report of one collector: `families` it declares, `signals` as its start
    left them (also after a failed start: they say which variants were refused)."""
    sources = tuple(_source(name, fam, signals, started, reason) for fam in families)
    dark = [st for st in signals if not st.available]
    if not started or (sources and not any(s.available for s in sources)):
        state = State.DOWN
        why = reason or "; ".join(f"{st.signal.name}: {st.reason}" for st in dark)
    elif any(not s.available for s in sources):
        state = State.DEGRADED
        why = "no source for signals " + ", ".join(st.signal.name for st in dark)
    else:
        state, why = State.UP, ""
    return CollectorReport(name, state, why, sources, tuple(signals))


def _source(collector: str, family: Family, signals: Sequence[SignalState], started: bool,
            reason: str) -> FamilySource:
    feeding = [st for st in signals if family in st.signal.families]
    if not feeding:
        return FamilySource(family, collector, started, reason="" if started else reason)
    live = [st for st in feeding if st.available]
    names = ",".join(st.signal.name for st in feeding)
    if not started or not live:
        why = "; ".join(f"{st.signal.name}: {st.reason}" for st in feeding if st.reason)
        return FamilySource(family, collector, False, names, reason=why or reason)
    return FamilySource(
        family, collector, True, names, ",".join(st.variant or "" for st in live),
        tuple(p for st in live for p in st.programs),
        "; ".join(f"{st.signal.name}: {st.reason}" for st in feeding if st.reason))

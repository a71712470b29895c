"""Metric family metadata: one declaration per exported family, checked when declared.

Collectors declare the families they feed and hand the `Family` objects themselves to
their samples (never a name string: a typo is then an AttributeError at import, not a
series that silently disappears). Names follow `kpod_<area>_<name>_<unit>`; a family
is refused at declaration when its name, labels or unit break the conventions the
export and the dashboards rely on:

- counters end in `_total`, nothing else does;
- one unit spelling, the one OTLP carries (UCUM): "s" exactly when the base name ends
  in `_seconds`, "By" exactly when it ends in `_bytes`, "" otherwise;
- label names are Prometheus label names, unique, and none of the labels the export
  adds itself (owner labels, `le`).

`register` puts families in the process registry that deploy/metric-names.txt is
generated from; a second declaration of a name must be identical.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class FamilyType(enum.Enum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


UNITS = ("", "s", "By")
"""The unit spellings (UCUM, as OTLP wants them); Prometheus text carries no unit."""
_NAME = re.compile(r"^kpod_[a-z0-9_]*[a-z0-9]$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
RESERVED_LABELS = frozenset({"le", "quantile", "node", "namespace", "pod", "container",
                             "cgroup"})
"""Labels the export adds to every series (static and owner labels, histogram bounds)."""
RESERVED_LABEL_PREFIXES = ("__", "label_")
"""Prometheus-internal labels and the copied pod labels (label_<key>)."""


@dataclass(frozen=True, slots=True)
class Family:
    """One exported metric family.

    For histograms, `bucket_exponents` lists the k of the exported `le = 2^k * scale`
    bounds (a subset of the kernel slots; every such bound is exact because slot k ends
    exactly at 2^k), and `scale` converts the kernel unit to the exported base unit
    (1e-9 for ns -> seconds).
    """

    name: str
    type: FamilyType
    help: str
    unit: str = ""
    label_names: tuple[str, ...] = ()
    bucket_exponents: tuple[int, ...] = ()
    scale: float = 1.0

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError(f"metric family {self.name!r}: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """What breaks the naming, unit and label conventions (empty when sound)."""
        out: list[str] = []
        if not _NAME.match(self.name):
            out.append("name must match kpod_[a-z0-9_]+")
        is_total = self.name.endswith("_total")
        if is_total != (self.type is FamilyType.COUNTER):
            out.append("counters, and only counters, end in _total")
        base = self.name.removesuffix("_total")
        want = "s" if base.endswith("_seconds") else "By" if base.endswith("_bytes") else ""
        if self.unit not in UNITS:
            out.append(f"unit {self.unit!r} is not one of {UNITS}")
        elif self.unit != want:
            out.append(f"unit {self.unit!r} does not fit the name (expected {want!r})")
        if len(set(self.label_names)) != len(self.label_names):
            out.append(f"label names repeat: {self.label_names}")
        for label in self.label_names:
            if (not _LABEL.match(label) or label in RESERVED_LABELS
                    or label.startswith(RESERVED_LABEL_PREFIXES)):
                out.append(f"label {label!r} is invalid or reserved by the export")
        if not self.help.strip():
            out.append("help text is empty")
        if self.type is FamilyType.HISTOGRAM:
            exps = self.bucket_exponents
            if not exps or list(exps) != sorted(set(exps)):
                out.append("a histogram needs ascending, distinct bucket_exponents")
            if not self.scale > 0:
                out.append("scale must be positive")
        elif self.bucket_exponents:
            out.append("only histograms have bucket_exponents")
        return out

    def bounds(self) -> list[float]:
        """Exported upper bounds in base units, ascending (no +Inf)."""
        return [(2.0**k) * self.scale for k in self.bucket_exponents]


_REGISTRY: dict[str, Family] = {}


def register(*families: Family) -> tuple[Family, ...]:
    """Declare families; a second declaration of a name must be identical."""
    for fam in families:
        old = _REGISTRY.get(fam.name)
        if old is not None and old != fam:
            raise ValueError(f"metric family {fam.name} declared twice with different metadata")
        _REGISTRY[fam.name] = fam
    return families


def all_families() -> dict[str, Family]:
    return dict(_REGISTRY)

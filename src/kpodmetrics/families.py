"""Metric family metadata: one declaration per exported family.

Collectors declare the families they feed; the export layer needs the type, help,
unit and extra label names to render them. Names follow `kpod_<area>_<name>_<unit>`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class FamilyType(enum.Enum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


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

    @property
    def ucum_unit(self) -> str:
        """The unit as OTLP expects it (UCUM: s, By), whichever spelling was declared."""
        return _UCUM.get(self.unit, self.unit)

    def bounds(self) -> list[float]:
        """Exported upper bounds in base units, ascending (no +Inf)."""
        return [(2.0**k) * self.scale for k in self.bucket_exponents]


_UCUM = {"seconds": "s", "second": "s", "bytes": "By", "byte": "By"}
_REGISTRY: dict[str, Family] = {}


def register(*families: Family) -> tuple[Family, ...]:
    """Declare families; a second declaration must be identical."""
    for fam in families:
        old = _REGISTRY.get(fam.name)
        if old is not None and old != fam:
            raise ValueError(f"metric family {fam.name} declared twice with different metadata")
        _REGISTRY[fam.name] = fam
    return families


def get(name: str) -> Family:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown metric family {name!r}: declare it with families.register") from None


def all_families() -> dict[str, Family]:
    return dict(_REGISTRY)

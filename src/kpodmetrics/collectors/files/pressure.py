"""Pressure stall information per cgroup from cpu/memory/io.pressure `total=` (usec).

"some" (at least one task stalled) is exported as `..._waiting_seconds_total`, "full"
(all non-idle tasks stalled at once) as `..._stalled_seconds_total`. cpu.pressure has
no "full" line before 5.13, and the files fail with EOPNOTSUPP when PSI is off
(psi=0): both mean "not available", not an error.
"""

from __future__ import annotations

from kpodmetrics import families
from kpodmetrics.collectors.base import CollectContext
from kpodmetrics.collectors.files.support.formats import parse_psi
from kpodmetrics.collectors.files.support.percgroup import PerCgroupCollector
from kpodmetrics.config import Settings
from kpodmetrics.families import Family, FamilyType
from kpodmetrics.pods.owner import CgroupRef
from kpodmetrics.samples import Kind, Sample

NAME = "pressure"
RESOURCES = ("cpu", "memory", "io")
BY_ROW: dict[tuple[str, str], Family] = {
    (res, row): fam
    for res in RESOURCES
    for row, fam in (
        ("some", Family(f"kpod_pressure_{res}_waiting_seconds_total", FamilyType.COUNTER,
                        f"Time at least one task of the cgroup stalled on {res} "
                        f"({res}.pressure some total).", "s")),
        ("full", Family(f"kpod_pressure_{res}_stalled_seconds_total", FamilyType.COUNTER,
                        f"Time all non-idle tasks of the cgroup stalled on {res} at once "
                        f"({res}.pressure full total).", "s")),
    )
}
"""(resource, PSI row) -> family: some = waiting, full = stalled."""
FAMILIES = families.register(*BY_ROW.values())


class PressureCollector(PerCgroupCollector):
    name = NAME
    families = FAMILIES
    files = tuple(f"{res}.pressure" for res in RESOURCES)
    own_value = frozenset(FAMILIES)  # overlapping stalls are one pod stall

    def samples_for(
        self, ref: CgroupRef, contents: dict[str, bytes], ctx: CollectContext
    ) -> list[Sample]:
        out = []
        for res in RESOURCES:
            data = contents.get(f"{res}.pressure")
            if data is None:
                continue
            parsed = parse_psi(data)
            if parsed.malformed:
                ctx.count_error(self.name, parsed.malformed)
            for row in ("some", "full"):
                pairs = parsed.rows.get(row)
                if pairs is not None:
                    out.append(Sample(BY_ROW[(res, row)], ref.cgroup_id, pairs["total"] / 1e6,
                                      Kind.CUMULATIVE))
        return out


def create(settings: Settings) -> PressureCollector:
    return PressureCollector()

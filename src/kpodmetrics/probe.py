"""`kpod-metrics probe`: which collectors and programs can run on this kernel."""

from __future__ import annotations

from kpodmetrics.collectors import registry
from kpodmetrics.collectors.base import CollectorUnavailable
from kpodmetrics.config import Settings


def probe_report(settings: Settings) -> str:
    lines = []
    for entry in registry.ENTRIES:
        try:
            collector = registry.create(entry.name, settings)
        except ImportError as exc:
            lines.append(f"{entry.name:10s} unavailable  {exc}")
            continue
        try:
            collector.start()
        except CollectorUnavailable as exc:
            lines.append(f"{entry.name:10s} down         {exc}")
            continue
        try:
            progs = collector.programs()
            ok = sum(1 for p in progs if p.attached)
            if progs:
                lines.append(f"{entry.name:10s} up           {ok}/{len(progs)} programs attached")
            else:
                lines.append(f"{entry.name:10s} up           {entry.description}")
            for p in progs:
                if not p.attached:
                    lines.append(f"{'':10s}   {p.program}: {p.reason}")
        finally:
            collector.close()
    return "\n".join(lines)

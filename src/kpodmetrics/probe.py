"""`kpod-metrics probe`: what this kernel lets each collector see, family by family.

Every collector (of every profile) is built, started and closed again, as the agent
would start it. For each family the report says whether it has a source here, through
which signal and program variant, or why not (each variant's reason): the input of
docs/kernels.md and the first thing to read when a panel is empty.

    kpod-metrics probe            # text, one block per collector
    kpod-metrics probe --json     # {"families": {name: {available, collector, signal,
                                  #   program, variant, reason}},
                                  #  "collectors": {name: {state, reason, source}}}
"""

from __future__ import annotations

import json

from kpodmetrics import availability
from kpodmetrics.availability import CollectorReport
from kpodmetrics.collectors import registry
from kpodmetrics.collectors.base import CollectorUnavailable
from kpodmetrics.config import Settings


def probe(settings: Settings) -> list[tuple[CollectorReport, str]]:
    """(report, summary) per registered collector: start it, read its state, close it;
    the summary starts with the collector's source (ebpf or files)."""
    out: list[tuple[CollectorReport, str]] = []
    for entry in registry.ENTRIES:
        try:
            collector = registry.create(entry.name, settings)
        except (ImportError, CollectorUnavailable) as exc:
            out.append((availability.report(entry.name, (), (), started=False,
                                            reason=str(exc)), entry.source))
            continue
        try:
            try:
                collector.start()
            except CollectorUnavailable as exc:
                rep = availability.report(entry.name, collector.families,
                                          collector.signal_states(), started=False,
                                          reason=str(exc))
                out.append((rep, entry.source))
                continue
            progs = collector.programs()
            ok = sum(1 for p in progs if p.attached)
            summary = f"{ok}/{len(progs)} programs attached" if progs else entry.description
            summary = f"{entry.source:6s} {summary}"
            states = collector.signal_states()
            if states:
                fed = sum(1 for st in states if st.available)
                summary += f", {fed}/{len(states)} signals fed"
            out.append((availability.report(entry.name, collector.families, states,
                                            started=True), summary))
        finally:
            collector.close()
    return out


def probe_report(settings: Settings) -> str:
    lines = []
    for rep, summary in probe(settings):
        text = summary if rep.state is not availability.State.DOWN else f"{summary:6s} {rep.reason}"
        lines.append(f"{rep.name:10s} {rep.state.value:12s} {text}")
        for src in rep.sources:
            if src.available and src.signal:
                via = f"{src.signal} via {src.variant} ({', '.join(src.programs)})"
            elif src.available:
                via = "yes"
            else:
                via = f"NOT AVAILABLE: {src.reason}"
            lines.append(f"{'':10s}   {src.family.name}: {via}")
    return "\n".join(lines)


def probe_json(settings: Settings) -> str:
    reports = probe(settings)
    doc = {
        "families": {src.family.name: src.as_json() for rep, _ in reports for src in rep.sources},
        "collectors": {rep.name: {"state": rep.state.value, "reason": rep.reason,
                                  "source": registry.BY_NAME[rep.name].source}
                       for rep, _ in reports},
    }
    return json.dumps(doc, indent=2, sort_keys=True)

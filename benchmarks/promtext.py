"""Reading the agent's own /metrics: just enough of the Prometheus text format to pick
out the self-metrics the benchmark needs (no client library, so the harness measures
the agent rather than its own parsing dependencies)."""

from __future__ import annotations

import re
from collections.abc import Iterator

Labels = tuple[tuple[str, str], ...]
_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> Iterator[tuple[str, Labels, float]]:
    """Yield (name, sorted labels, value) for every sample line."""
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            continue
        try:
            value = float(m.group(4))
        except ValueError:
            continue
        labels = tuple(sorted(_LABEL.findall(m.group(3) or "")))
        yield m.group(1), labels, value


class Scrape:
    """One scrape, indexed by family name."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[str, list[tuple[Labels, float]]] = {}
        for name, labels, value in parse(text):
            self.samples.setdefault(name, []).append((labels, value))

    @property
    def series(self) -> int:
        return sum(len(v) for v in self.samples.values())

    def value(self, name: str, **match: str) -> float | None:
        """The first sample of `name` whose labels include `match`."""
        for labels, value in self.samples.get(name, []):
            d = dict(labels)
            if all(d.get(k) == v for k, v in match.items()):
                return value
        return None

    def by_label(self, name: str, label: str) -> dict[str, float]:
        return {dict(lab).get(label, ""): v for lab, v in self.samples.get(name, [])}

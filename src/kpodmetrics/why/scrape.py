"""One read of an agent's /metrics: every sample by name and labels, plus which
families the agent declares (a running collector lists its families even before
their first series, so "declared but no series" means zero, "not declared" means the
agent cannot see it)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

LabelSet = frozenset[tuple[str, str]]

MAX_BYTES = 256 << 20
CYCLE_AGE = "kpod_last_cycle_age_seconds"
"""The agent's age of its last collection at the read (selfmetrics.LAST_CYCLE_AGE)."""


class AgentUnreachable(Exception):
    """The agent did not answer with a Prometheus text page."""


@dataclass
class Scrape:
    """Samples keyed by sample name (`x_total`, `x_sum`, ...), then by label set."""

    samples: dict[str, dict[LabelSet, float]] = field(default_factory=dict)
    families: set[str] = field(default_factory=set)
    """Declared base names as in deploy/metric-names.txt: counters with `_total`,
    histograms without their suffixes."""
    at: float = 0.0
    """time.monotonic() when the page was read."""
    collected_at: float | None = None
    """time.monotonic() of the agent collection the page shows: the read time minus
    the page's kpod_last_cycle_age_seconds; None for a page without it."""

    def has(self, family: str) -> bool:
        return family in self.families

    def series(self, sample: str) -> dict[LabelSet, float]:
        return self.samples.get(sample, {})


def parse(text: str, at: float = 0.0) -> Scrape:
    """Parse Prometheus text (prometheus_client's parser: the format's reference)."""
    out = Scrape(at=at)
    for fam in text_string_to_metric_families(text):
        out.families.add(fam.name + "_total" if fam.type == "counter" else fam.name)
        for s in fam.samples:
            if s.name.endswith("_created"):
                continue
            out.samples.setdefault(s.name, {})[frozenset(s.labels.items())] = float(s.value)
    ages = out.series(CYCLE_AGE)
    if ages:
        out.collected_at = at - min(ages.values())
    return out


def fetch(url: str, timeout: float = 10.0) -> Scrape:
    """GET <url>/metrics (or url itself when it already ends in /metrics)."""
    target = url if url.rstrip("/").endswith("/metrics") else url.rstrip("/") + "/metrics"
    try:
        with urllib.request.urlopen(target, timeout=timeout) as resp:
            body = resp.read(MAX_BYTES)
    except urllib.error.HTTPError as exc:
        raise AgentUnreachable(f"{target} answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AgentUnreachable(f"cannot reach the agent at {target}: {reason}") from exc
    try:
        return parse(body.decode("utf-8"), at=time.monotonic())
    except (UnicodeDecodeError, ValueError) as exc:
        raise AgentUnreachable(f"{target} did not serve Prometheus text: {exc}") from exc

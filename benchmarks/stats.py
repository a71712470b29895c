"""Small robust statistics: medians and spreads, because single runs on a noisy
2-core machine mean little and outliers must not decide a comparison."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Summary:
    """Median with the observed range; `n` says how many rounds back it."""

    median: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return {"median": self.median, "low": self.low, "high": self.high, "n": self.n}


def summarize(values: Sequence[float]) -> Summary | None:
    vals = [v for v in values if v == v]  # drop NaN
    if not vals:
        return None
    return Summary(statistics.median(vals), min(vals), max(vals), len(vals))


def ratios(values: Sequence[float], baselines: Sequence[float]) -> list[float]:
    """Pairwise value/baseline of the same round (so drift between rounds cancels)."""
    return [v / b for v, b in zip(values, baselines, strict=False) if b > 0 and v == v]


def pct(ratio: float) -> str:
    """1.22 -> '+22.0%'."""
    return f"{(ratio - 1) * 100:+.1f}%"

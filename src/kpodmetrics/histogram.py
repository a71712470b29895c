"""Log2 slot maths shared by tests, collectors and exporters.

Slot k counts values v with 2^(k-1) < v <= 2^k (slot 0: v <= 1), so the cumulative
count at `le = 2^k` is exact: it is the sum of slots 0..k. Any subset of exponents is
an exact set of Prometheus bucket bounds.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Sequence


def slot_of(v: int, nslots: int) -> int:
    """The slot a value lands in (mirror of kpod_slot in ebpf/kpod_bpf.h)."""
    if v <= 1:
        return 0
    k = (v - 1).bit_length()  # ceil(log2 v) for v >= 2
    return k if k < nslots else nslots - 1


def cumulative_at(slots: Sequence[int], exponents: Sequence[int]) -> list[int]:
    """Cumulative counts at le = 2^k for each k in `exponents` (ascending).

    Exponents at or beyond the last (open-ended) slot are not exact and are refused."""
    nslots = len(slots)
    out: list[int] = []
    running = 0
    upto = -1
    for k in exponents:
        if k >= nslots - 1:
            raise ValueError(f"bucket 2^{k} is not exact with {nslots} slots (max 2^{nslots - 2})")
        if k < upto:
            raise ValueError("exponents must ascend")
        running += sum(slots[upto + 1 : k + 1])
        upto = k
        out.append(running)
    return out


def cumulative_getter(exponents: Sequence[int], nslots: int) -> Callable[[Sequence[int]], list[int]]:
    """`cumulative_at` for many histograms of `nslots` slots and the same exponents:
    the exponents are checked once, and each call is a running sum and one pick (the
    exposition does this for every histogram series at every render)."""
    if not exponents:
        return lambda slots: []
    cumulative_at([0] * nslots, exponents)  # the same refusals, once
    pick = operator.itemgetter(*exponents)
    if len(exponents) == 1:
        return lambda slots: [pick(list(itertools.accumulate(slots)))]
    return lambda slots: list(pick(list(itertools.accumulate(slots))))

"""Slot maths: slot k holds 2^(k-1) < v <= 2^k; exported le = 2^k edges are exact.

The C function the BPF programs use (kpod_slot in ebpf/kpod_bpf.h) is compiled for the
host and compared with the definition, value by value, including every power of two
and its neighbours.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpodmetrics.bpf.structs import KPOD_HIST_SLOTS as HIST_SLOTS
from kpodmetrics.histogram import cumulative_at, slot_of
from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]


def by_definition(v: int, nslots: int = HIST_SLOTS) -> int:
    """Smallest k with v <= 2^k (0 for v <= 1), clamped to the last slot."""
    k = 0
    while (1 << k) < v:
        k += 1
    return min(k, nslots - 1)


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_every_value_lands_in_exactly_one_slot(v: int) -> None:
    k = slot_of(v, HIST_SLOTS)
    assert k == by_definition(v)
    if 0 < k < HIST_SLOTS - 1:
        assert 2 ** (k - 1) < v <= 2**k


@pytest.mark.parametrize("k", range(1, HIST_SLOTS - 1))
def test_powers_of_two_are_edges(k: int) -> None:
    assert slot_of(2**k, HIST_SLOTS) == k
    assert slot_of(2**k + 1, HIST_SLOTS) == k + 1
    assert slot_of(2**k - 1, HIST_SLOTS) == (k if k > 1 else 0)


@given(st.lists(st.integers(min_value=0, max_value=2**40), max_size=200),
       st.lists(st.integers(min_value=0, max_value=HIST_SLOTS - 2), min_size=1, max_size=8,
                unique=True))
def test_cumulative_buckets_equal_counting_values(values: list[int], exps: list[int]) -> None:
    slots = [0] * HIST_SLOTS
    for v in values:
        slots[slot_of(v, HIST_SLOTS)] += 1
    exps.sort()
    assert cumulative_at(slots, exps) == [sum(1 for v in values if v <= 2**k) for k in exps]


def test_open_ended_last_slot_is_not_an_exact_bound() -> None:
    with pytest.raises(ValueError):
        cumulative_at([0] * HIST_SLOTS, [HIST_SLOTS - 1])


@pytest.fixture(scope="module")
def c_slot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require(shutil.which("cc") is not None, "a C compiler is needed to build the slot harness")
    out = tmp_path_factory.mktemp("slot") / "slot_harness"
    subprocess.run(["cc", "-O2", "-I", str(ROOT / "ebpf"), "-o", str(out),
                    str(ROOT / "tests/helpers/slot_harness.c")], check=True)
    return out


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**64 - 1), min_size=1, max_size=300))
def test_bpf_slot_function_matches_definition(c_slot: Path, values: list[int]) -> None:
    edges = [x for k in range(64) for x in (2**k - 1, 2**k, 2**k + 1) if x < 2**64]
    vals = values + edges
    out = subprocess.run([str(c_slot)], input="\n".join(map(str, vals)), capture_output=True,
                         text=True, check=True).stdout.split()
    assert [int(x) for x in out] == [by_definition(v) for v in vals]

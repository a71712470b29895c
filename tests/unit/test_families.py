"""Families are checked when declared: names, units, labels; the registry refuses
a second, different declaration of a name."""

from __future__ import annotations

import importlib

import pytest

from kpodmetrics import families
from kpodmetrics.collectors import registry
from kpodmetrics.families import Family, FamilyType

C, G, H = FamilyType.COUNTER, FamilyType.GAUGE, FamilyType.HISTOGRAM


@pytest.mark.parametrize(("args", "why"), [
    (("kpod_x_bytes_total", C, "h"), "expected 'By'"),
    (("kpod_x_total", C, "h", "By"), "expected ''"),
    (("kpod_x_seconds", G, "h", "seconds"), "is not one of"),
    (("kpod_x", C, "h"), "end in _total"),
    (("kpod_x_total", G, "h"), "end in _total"),
    (("node_x_total", C, "h"), "name must match"),
    (("kpod_x_total", C, "h", "", ("pod",)), "reserved"),
    (("kpod_x_total", C, "h", "", ("label_app",)), "reserved"),
    (("kpod_x_total", C, "h", "", ("a-b",)), "invalid"),
    (("kpod_x_total", C, "h", "", ("a", "a")), "repeat"),
    (("kpod_x_total", C, " "), "help text is empty"),
    (("kpod_x_seconds", H, "h", "s", (), ()), "ascending"),
    (("kpod_x_seconds", H, "h", "s", (), (3, 1)), "ascending"),
    (("kpod_x_seconds", G, "h", "s", (), (1,)), "only histograms"),
])
def test_bad_declarations_are_refused(args: tuple, why: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=why):
        Family(*args)


def test_registry_refuses_a_conflicting_duplicate() -> None:
    a = Family("kpod_test_dup_total", C, "first")
    families.register(a, Family("kpod_test_dup_total", C, "first"))  # identical: fine
    with pytest.raises(ValueError, match="declared twice"):
        families.register(Family("kpod_test_dup_total", C, "second"))


def test_every_shipped_family_passes_the_checks() -> None:
    """Importing every collector declares every family; each was checked on creation,
    and a unit is spelled only one way across all of them."""
    for e in registry.ENTRIES:
        importlib.import_module(e.module)
    importlib.import_module("kpodmetrics.selfmetrics")
    fams = families.all_families()
    assert len(fams) > 50
    assert {f.unit for f in fams.values()} <= {"", "s", "By"}
    assert all(not f.problems() for f in fams.values())

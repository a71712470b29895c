"""render_gzip: ISA-L where installed, zlib otherwise; the same text either way."""

from __future__ import annotations

import gzip
import importlib
import sys

import pytest

from kpodmetrics.export import promtext
from kpodmetrics.export.store import Series
from kpodmetrics.families import Family, FamilyType

FAM = Family("kpod_test_gzip_total", FamilyType.COUNTER, "h", label_names=("k",))
ROWS = [(FAM, [Series(labels=(("k", f"v{i}"),), owner_key="", start_ns=0, value=float(i))
               for i in range(5000)])]


def test_isal_is_the_compressor_here() -> None:
    assert promtext._deflate.__name__ == "isal.isal_zlib"
    assert gzip.decompress(promtext.render_gzip(ROWS)) == promtext.render(ROWS)


def test_without_isal_zlib_compresses_the_same_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "isal", None)  # import isal fails
    try:
        fallback = importlib.reload(promtext)
        assert fallback._deflate.__name__ == "zlib"
        assert gzip.decompress(fallback.render_gzip(ROWS)) == fallback.render(ROWS)
    finally:
        monkeypatch.undo()
        importlib.reload(promtext)
    assert promtext._deflate.__name__ == "isal.isal_zlib"

"""Build a mutant of one BPF object: a test's proof that its check can fail.

A kernel test that asserts attribution (whose cgroup, which holder) is only worth its
oracle if the classic bug fails it. The mutant is this tree's source with one line
swapped, compiled like `make bpf`, and loaded through KPOD_BPF_DIR.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kernel.bpf_build import compile_bpf

ROOT = Path(__file__).resolve().parents[2]


def use_mutant(name: str, good: str, bad: str, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> None:
    """Compile ebpf/<name>.bpf.c with the one line `good` replaced by `bad` into
    tmp_path and make the loader take objects from there for the rest of the test."""
    src = (ROOT / "ebpf" / f"{name}.bpf.c").read_text()
    assert src.count(good) == 1, f"{good!r} is not one line of ebpf/{name}.bpf.c"
    (tmp_path / f"{name}.bpf.c").write_text(src.replace(good, bad))
    compile_bpf(tmp_path / f"{name}.bpf.c", tmp_path / f"{name}.bpf.o", ROOT / "ebpf")
    monkeypatch.setenv("KPOD_BPF_DIR", str(tmp_path))

"""malloc_tuning: what is handed to mallopt, and what the user's environment keeps."""

from __future__ import annotations

import ctypes

from kpodmetrics import malloc_tuning


class FakeLibc:
    def __init__(self, answer: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.answer = answer

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.answer


def test_sets_a_fixed_mmap_threshold_and_two_arenas() -> None:
    libc = FakeLibc()
    done = malloc_tuning.tune({}, libc)
    # glibc's malloc.h: M_MMAP_THRESHOLD -3, M_ARENA_MAX -8
    assert libc.calls == [(-3, 131072), (-8, 2)]
    assert done == {"MALLOC_MMAP_THRESHOLD_": 131072, "MALLOC_ARENA_MAX": 2}


def test_a_setting_from_the_environment_is_left_alone() -> None:
    libc = FakeLibc()
    done = malloc_tuning.tune({"MALLOC_ARENA_MAX": "8"}, libc)
    assert libc.calls == [(-3, 131072)]
    assert done == {"MALLOC_MMAP_THRESHOLD_": 131072}


def test_a_refused_setting_is_not_reported_as_set(caplog) -> None:  # type: ignore[no-untyped-def]
    done = malloc_tuning.tune({}, FakeLibc(answer=0))
    assert done == {}
    assert "MALLOC_ARENA_MAX stays at glibc's default" in caplog.text


def test_no_mallopt_no_change() -> None:
    assert malloc_tuning.tune({}, object()) == {}


def test_real_glibc_accepts_both() -> None:
    """This machine's C library is glibc: both calls succeed for real."""
    assert hasattr(ctypes.CDLL(None), "mallopt")
    assert malloc_tuning.tune({}) == {"MALLOC_MMAP_THRESHOLD_": 131072, "MALLOC_ARENA_MAX": 2}

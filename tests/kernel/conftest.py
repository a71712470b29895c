"""Fixtures shared by the kernel tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture
def started_collectors() -> Iterator[Callable[..., Any]]:
    """`make(cls, **kw)`: a started eBPF collector, closed (programs detached) after the test."""
    made: list[Any] = []

    def make(cls: type, **kw: Any) -> Any:
        c = cls(**kw)
        c.start()
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()

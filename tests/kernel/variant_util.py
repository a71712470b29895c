"""Start a collector on one forced program variant, or skip naming the kernel feature.

A forced variant that cannot work leaves its signal dark (no fallback). Whether that
is a bug or the kernel's limit is decided here from what the variant needs: a skip is
allowed only with a reason naming a feature this kernel lacks (then even in CI); a
variant that should work here and does not fails the test.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from kpodmetrics.collectors.base import CollectorUnavailable


def kernel_release() -> tuple[int, int]:
    major, minor = os.uname().release.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def start_forced(cls: Callable[..., Any], signal: str, variant: str,
                 lacks: Callable[[str], str], *args: Any, **kw: Any) -> Any:
    """`cls(*args, variants={signal: variant}, **kw)`, started. `lacks(reason)` gets why
    the variant failed and returns the missing kernel feature that excuses it ("" when
    nothing is missing: the test fails)."""
    c = cls(*args, variants={signal: variant}, **kw)
    failed = ""
    try:
        c.start()
    except CollectorUnavailable as exc:  # nothing attached: the state says why
        failed = str(exc)
    state = next((s for s in c.signal_states() if s.signal.name == signal), None)
    if state is None:
        c.close()
        # the load itself refused the forced variant (e.g. a map type this kernel lacks)
        missing = lacks(failed) if failed else ""
        if missing:
            pytest.skip(f"kernel {os.uname().release} lacks {missing}: variant {variant} "
                        f"cannot run ({failed[:300]})")
        pytest.fail(f"signal {signal}: the collector did not get as far as choosing a "
                    f"variant: {failed or 'no signal state'}")
    if state.variant == variant:
        return c
    c.close()
    why = state.failures.get(variant, state.reason)
    missing = lacks(why)
    if missing:
        pytest.skip(f"kernel {os.uname().release} lacks {missing}: variant {variant} "
                    f"cannot run ({why[:300]})")
    pytest.fail(f"signal {signal}: forced variant {variant} should work on "
                f"{os.uname().release} but does not: {state.reason}")

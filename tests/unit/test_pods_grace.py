"""Grace cache: TTL from deletion, LRU cap, re-add; checked against a naive model."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kpodmetrics.pods.grace import GraceCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_ttl_expiry_is_exact() -> None:
    clock = FakeClock()
    g: GraceCache[str, str] = GraceCache(5.0, 10, clock)
    g.add("a", "A")
    clock.now += 4.999
    assert g.get("a") == "A"
    assert g.expire() == []
    clock.now += 0.001
    assert g.get("a") is None  # the window is [delete, delete + ttl)
    assert g.expire() == ["A"]
    assert len(g) == 0


def test_lru_cap_evicts_least_recently_used() -> None:
    clock = FakeClock()
    g: GraceCache[str, str] = GraceCache(5.0, 2, clock)
    assert g.add("a", "A") == []
    assert g.add("b", "B") == []
    assert g.get("a") == "A"  # a is now more recent than b
    assert g.add("c", "C") == ["B"]
    assert "a" in g and "c" in g and "b" not in g
    assert g.evictions == 1


def test_pop_takes_entry_out_without_expiry() -> None:
    clock = FakeClock()
    g: GraceCache[str, str] = GraceCache(5.0, 10, clock)
    g.add("a", "A")
    assert g.pop("a") == "A"
    clock.now += 10
    assert g.expire() == []


def test_re_add_restarts_the_period() -> None:
    clock = FakeClock()
    g: GraceCache[str, str] = GraceCache(5.0, 10, clock)
    g.add("a", "A1")
    clock.now += 4
    g.add("a", "A2")
    clock.now += 4
    assert g.expire() == []
    assert g.get("a") == "A2"
    clock.now += 1
    assert g.expire() == ["A2"]


ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "get", "pop", "expire", "tick"]),
        st.integers(0, 5),
        st.floats(0, 3, allow_nan=False),
    ),
    max_size=60,
)


@given(ops=ops, cap=st.integers(1, 4))
def test_matches_naive_model(ops: list[tuple[str, int, float]], cap: int) -> None:
    clock = FakeClock()
    g: GraceCache[int, int] = GraceCache(2.0, cap, clock)
    model: list[tuple[int, float]] = []  # (key, expires) in LRU order, oldest first
    seen: set[int] = set()
    for op, key, dt in ops:
        if op == "tick":
            clock.now += dt
        elif op == "add":
            model = [(k, e) for k, e in model if k != key] + [(key, clock.now + 2.0)]
            evicted = [k for k, _ in model[: max(0, len(model) - cap)]]
            model = model[len(evicted):]
            assert g.add(key, key) == evicted
        elif op == "get":
            hit = [(k, e) for k, e in model if k == key and clock.now < e]
            assert g.get(key) == (key if hit else None)
            if hit:
                model = [(k, e) for k, e in model if k != key] + hit
        elif op == "pop":
            had = any(k == key for k, _ in model)
            model = [(k, e) for k, e in model if k != key]
            assert g.pop(key) == (key if had else None)
        else:
            expired = {k for k, e in model if clock.now >= e}
            model = [(k, e) for k, e in model if k not in expired]
            assert set(g.expire()) == expired
        seen |= {k for k, _ in model}
        assert len(g) == len(model) <= cap

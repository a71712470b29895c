"""Cardinality budget: new series beyond it fold into __overflow__, counted, never lost."""

from __future__ import annotations

import pytest

from kpodmetrics import config
from kpodmetrics.collectors.ebpf import runqueue as cpu
from kpodmetrics.export.store import OVERFLOW_VALUE, SeriesStore
from tests.unit.export_helpers import FakeResolver, cycle_samples

NODE = (("node", "n1"),)


def counters(store: SeriesStore) -> dict[tuple[tuple[str, str], ...], float]:
    return {s.labels: s.value for f, rows in store.snapshot()
            if f.name == cpu.CONTEXT_SWITCHES.name for s in rows}


def test_overall_budget_folds_new_series_and_counts_them() -> None:
    r = FakeResolver()
    r.live = set(range(10))
    store = SeriesStore(NODE, max_series=12)  # 3 series per pod: 4 pods fit
    store.apply(cycle_samples(range(10)), r)
    assert store.owner_series() == 12
    pods = {dict(s.labels)["pod"] for _, rows in store.snapshot() for s in rows}
    assert pods == {f"pod-{i}" for i in range(4)} | {OVERFLOW_VALUE}
    # 6 pods x 3 series refused: counted once per distinct series
    assert sum(store.dropped().values()) == 18
    # nothing vanished: the overflow series hold exactly the refused pods' increments
    vals = counters(store)
    over = (*NODE, *((k, OVERFLOW_VALUE) for k in ("namespace", "pod", "container", "kind")))
    want = sum(float(c % 11 + 1) + 1.5 for c in range(4, 10))
    assert vals[over] == pytest.approx(want)
    # second cycle: existing series keep updating, refusals are not re-counted
    store.apply(cycle_samples(range(10), step=2), r)
    assert sum(store.dropped().values()) == 18
    pod0 = (*NODE, ("namespace", "ns0"), ("pod", "pod-0"), ("container", "app"), ("kind", "voluntary"))
    assert counters(store)[pod0] == 1.0 + 2.0
    assert counters(store)[over] == pytest.approx(want + sum(c % 11 + 2 + 3.0 for c in range(4, 10)))


def test_per_family_budget_and_release_on_owner_removal() -> None:
    r = FakeResolver()
    r.live = set(range(5))
    store = SeriesStore(NODE, max_series_per_family=3)
    store.apply(cycle_samples(range(5)), r)
    counts = store.series_counts()
    assert counts[cpu.RUNQUEUE.name] == 4  # 3 pods + overflow
    assert counts[cpu.CONTEXT_SWITCHES.name] == 4  # 3 series (pod 0 both kinds, pod 1) + overflow
    assert store.dropped() == {cpu.RUNQUEUE.name: 2, cpu.CONTEXT_SWITCHES.name: 7}
    # pods 0..2 leave: their budget frees; a new pod gets a real series again
    r.remove([0, 1, 2])
    store.apply([], r)
    r.live |= {100}
    store.apply(cycle_samples([100]), r)
    labels = {dict(s.labels)["pod"] for f, rows in store.snapshot()
              if f.name == cpu.RUNQUEUE.name for s in rows}
    assert "pod-100" in labels
    # the overflow series stays (a counter must not go backwards)
    assert OVERFLOW_VALUE in labels


def test_agent_series_are_exempt() -> None:
    from kpodmetrics import selfmetrics

    store = SeriesStore(NODE, max_series=1)
    store.apply_agent(selfmetrics.series_samples({"a": 1, "b": 2, "c": 3}, {}))
    assert store.series_counts()[selfmetrics.SERIES.name] == 3
    assert store.dropped() == {}


@pytest.mark.parametrize("env,key", [
    ({"KPOD_MAX_SERIES": "-5"}, "KPOD_MAX_SERIES"),
    ({"KPOD_MAX_SERIES_PER_FAMILY": "lots"}, "KPOD_MAX_SERIES_PER_FAMILY"),
    ({"OTEL_EXPORTER_OTLP_HEADERS": "api-key=abc,broken"}, "OTEL_EXPORTER_OTLP_HEADERS"),
    ({"OTEL_EXPORTER_OTLP_HEADERS": "bad key=1"}, "OTEL_EXPORTER_OTLP_HEADERS"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
    ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
])
def test_bad_export_settings_name_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(config.ConfigError) as exc:
        config.load({}, env)
    assert len(exc.value.problems) == 1
    assert exc.value.problems[0].startswith(key)
    assert "abc" not in str(exc.value)  # header values are secrets: never echoed


def test_headers_parse_url_encoded_values() -> None:
    assert config.parse_otlp_headers("Authorization=Basic%20eDp5, x-tenant = t1 ,") == {
        "Authorization": "Basic eDp5", "x-tenant": "t1"}

"""Settings: flags over env over defaults; one clear message per bad key."""

from __future__ import annotations

import pytest

from kpodmetrics import config
from kpodmetrics.collectors import registry


def test_defaults() -> None:
    s = config.load({}, {})
    assert (s.profile, s.poll_interval, s.port) == ("standard", 30.0, 9090)


def test_flag_beats_env() -> None:
    s = config.load({"poll_interval": "5s"}, {"KPOD_POLL_INTERVAL": "500ms"})
    assert s.poll_interval == 5.0
    assert config.load({}, {"KPOD_POLL_INTERVAL": "500ms"}).poll_interval == 0.5


@pytest.mark.parametrize(("env", "key"), [
    ({"KPOD_POLL_INTERVAL": "soon"}, "KPOD_POLL_INTERVAL"),
    ({"KPOD_POLL_INTERVAL": "0s"}, "KPOD_POLL_INTERVAL"),
    ({"KPOD_PORT": "99999"}, "KPOD_PORT"),
    ({"KPOD_PORT": "http"}, "KPOD_PORT"),
    ({"KPOD_PROFILE": "everything"}, "KPOD_PROFILE"),
    ({"KPOD_COLLECTORS": "cpuu=on"}, "KPOD_COLLECTORS"),
    ({"KPOD_POLL_INTERVALL": "3s"}, "KPOD_POLL_INTERVALL"),
])
def test_bad_values_name_their_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(config.ConfigError) as exc:
        config.load({}, env)
    assert len(exc.value.problems) == 1
    assert exc.value.problems[0].startswith(key)


def test_all_problems_reported_together() -> None:
    with pytest.raises(config.ConfigError) as exc:
        config.load({}, {"KPOD_PORT": "x", "KPOD_PROFILE": "y"})
    assert len(exc.value.problems) == 2


def test_profiles_nest() -> None:
    sets = [set(registry.enabled_names(config.load({"profile": p}, {}))) for p in config.PROFILES]
    assert sets[0] < sets[1] < sets[2]
    assert {"cpu", "mem", "diskio"} == sets[0]
    assert "syscall" in sets[2] - sets[1]


def test_collector_overrides() -> None:
    s = config.load({"profile": "minimal", "collectors": "syscall=on,diskio=off"}, {})
    assert registry.enabled_names(s) == ["cpu", "mem", "syscall"]

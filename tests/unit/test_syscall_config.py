"""KPOD_SYSCALLS / --syscalls: defaults, unknown names, and the empty list."""

from __future__ import annotations

import pytest

from kpodmetrics import config
from kpodmetrics.collectors.ebpf import syscalls as syscall_collector
from kpodmetrics.config import ConfigError, load


def test_default_is_the_seed_list() -> None:
    s = load({}, {})
    assert s.syscalls == ("read", "write", "openat", "close", "connect", "accept4", "sendto",
                          "recvfrom", "epoll_wait", "epoll_pwait", "futex")


def test_names_from_env_and_flag() -> None:
    assert load({}, {"KPOD_SYSCALLS": "openat, Read"}).syscalls == ("openat", "read")
    assert load({"syscalls": "futex"}, {"KPOD_SYSCALLS": "read"}).syscalls == ("futex",)


def test_unknown_name_is_a_startup_error_with_suggestions() -> None:
    with pytest.raises(ConfigError) as info:
        load({}, {"KPOD_SYSCALLS": "read,opnat,epoll_wiat"})
    lines = info.value.problems
    assert len(lines) == 2
    assert "KPOD_SYSCALLS/--syscalls" in lines[0] and "'opnat'" in lines[0]
    assert "did you mean openat" in lines[0]
    assert "'epoll_wiat'" in lines[1] and "epoll_wait" in lines[1]


def test_names_that_never_return_or_end_restarts_are_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError) as info:
        load({}, {"KPOD_SYSCALLS": "read,exit_group,rt_sigreturn"})
    text = " ".join(info.value.problems)
    assert "'exit_group' cannot be measured: it never returns" in text
    assert "'rt_sigreturn' cannot be measured" in text and "EINTR" in text
    assert "'read'" not in text


@pytest.mark.parametrize("raw", ["none", "NONE", ","])
def test_empty_list(raw: str) -> None:
    assert load({}, {"KPOD_SYSCALLS": raw}).syscalls == ()


def test_empty_list_collector_loads_nothing_and_reports_nothing() -> None:
    """No root needed: with nothing to trace the collector never touches BPF."""
    c = syscall_collector.create(config.Settings(syscalls=()))
    c.start()
    assert c.obj is None
    assert list(c.collect(None)) == []  # type: ignore[arg-type]
    assert list(c.programs()) == [] and list(c.map_health()) == []
    c.close()


def test_option_is_documented_in_the_table() -> None:
    opt = next(o for o in config.OPTIONS if o.attr == "syscalls")
    assert (opt.env, opt.flag) == ("KPOD_SYSCALLS", "--syscalls")

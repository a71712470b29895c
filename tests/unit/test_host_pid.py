"""Which pid stands for the host's namespaces (KPOD_HOST_PID)."""

from __future__ import annotations

import os
from pathlib import Path

from kpodmetrics.collectors.files.support.procs import host_pid


def test_explicit_values() -> None:
    assert host_pid("self", "/proc") == os.getpid()
    assert host_pid("42", "/host/proc") == 42


def test_auto_takes_pid_1_when_its_namespaces_are_readable(tmp_path: Path) -> None:
    ns = tmp_path / "1" / "ns"
    ns.mkdir(parents=True)
    (ns / "net").write_text("")
    (ns / "mnt").write_text("")
    assert host_pid("auto", str(tmp_path)) == 1


def test_auto_in_a_foreign_proc_root_never_guesses_our_own_pid(tmp_path: Path) -> None:
    assert host_pid("auto", str(tmp_path)) == 1


def test_auto_on_own_proc_falls_back_to_self_only_when_pid_1_is_hidden() -> None:
    try:
        os.stat("/proc/1/ns/net")
        os.stat("/proc/1/ns/mnt")
        expected = 1
    except OSError:
        expected = os.getpid()
    assert host_pid("auto", "/proc") == expected

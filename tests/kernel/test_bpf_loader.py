"""Loader behaviour on the real kernel: bad programs are dropped alone, with reasons;
missing objects and kernels without BTF give one clear error; both map paths work."""

from __future__ import annotations

import errno
import shutil
import subprocess
from pathlib import Path

import pytest

from kpodmetrics.bpf import features
from kpodmetrics.bpf.errors import BpfError, ObjectNotFound
from kpodmetrics.bpf.loader import BpfObject, LoadOptions
from tests.conftest import require, require_root
from tests.e2e.agent_util import loaded_kpod_programs
from tests.kernel.bpf_build import built_object


@pytest.fixture(scope="module")
def mixed_object() -> str:
    return built_object("mixed")


@pytest.mark.kernel
def test_rejected_and_missing_programs_are_dropped_alone(mixed_object: str) -> None:
    require_root()
    with BpfObject("mixed", mixed_object).load() as obj:
        obj.attach()
        st = obj.programs
        assert st["good_prog"].attached
        assert not st["rejected_prog"].loaded
        assert st["rejected_prog"].reason.startswith("load failed")
        assert not st["missing_hook_prog"].loaded
        assert "not in this kernel" in st["missing_hook_prog"].reason
        # the good program really runs
        import time
        time.sleep(0.2)
        read = obj.map("counts").read_and_reset()
        assert read.count == 1
        assert int.from_bytes(read.values[:8], "little") > 0
    assert_unloaded("good_prog")


def assert_unloaded(name: str, timeout: float = 3.0) -> None:
    """Program memory is freed after an RCU grace period: poll briefly."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(["bpftool", "prog", "show"], capture_output=True, text=True).stdout
        if f"name {name} " not in out:
            return
        assert time.monotonic() < deadline, f"{name} still loaded after close"
        time.sleep(0.1)


@pytest.mark.kernel
@pytest.mark.parametrize("legacy", [False, True], ids=["batch", "legacy"])
def test_read_and_reset_returns_every_entry_once(mixed_object: str, legacy: bool) -> None:
    require_root()
    with BpfObject("mixed", mixed_object,
                   LoadOptions(only=frozenset({"good_prog"}), legacy_maps=legacy)).load() as obj:
        m = obj.map("counts")
        for k in range(40):
            m.update(k.to_bytes(4, "little"), (k * 10).to_bytes(8, "little"))
        read = m.read_and_reset()
        got = {int.from_bytes(k, "little"): int.from_bytes(v, "little") for k, v in read.items()}
        # key 0 is also bumped by the program; all others are exactly what we wrote
        assert set(got) == set(range(40))
        assert all(got[k] == k * 10 for k in range(1, 40))
        assert m.batch_supported is (None if legacy else True)
        again = {int.from_bytes(k, "little") for k, _ in m.read_and_reset().items()}
        assert again <= {0}  # only what the program wrote since


def test_missing_object_names_path_and_remedy(tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFound) as exc:
        BpfObject("ghost", str(tmp_path / "ghost.bpf.o")).load()
    msg = str(exc.value)
    assert "ghost.bpf.o" in msg and "ENOENT" in msg and "make bpf" in msg


def test_kernel_without_btf_is_a_clear_error(monkeypatch: pytest.MonkeyPatch,
                                             mixed_object: str) -> None:
    monkeypatch.setattr(features, "VMLINUX_BTF", "/nonexistent/vmlinux")
    features.has_vmlinux_btf.cache_clear()
    try:
        with pytest.raises(BpfError) as exc:
            BpfObject("mixed", mixed_object).load()
        assert exc.value.err == errno.ENOENT
        assert "CONFIG_DEBUG_INFO_BTF" in str(exc.value)
    finally:
        features.has_vmlinux_btf.cache_clear()


def test_nothing_of_ours_left_loaded() -> None:
    require(shutil.which("bpftool") is not None, "bpftool lists loaded programs")
    assert [p for p in loaded_kpod_programs() if "good_prog" in p] == []


def test_kernel_btf_is_freed_after_start_up_and_reloaded_when_asked() -> None:
    """The agent frees the probes' parsed kernel BTF once its collectors are loaded
    (13 MB resident on 6.18); answers given stay, a new question loads it again."""
    require_root()
    require(features.has_vmlinux_btf(), "kernel BTF at /sys/kernel/btf/vmlinux")
    features.btf_typedef_exists.cache_clear()
    assert features.btf_typedef_exists("btf_trace_sched_switch")
    assert features._btf_handle is not None
    features.release_vmlinux_btf()
    assert features._btf_handle is None
    assert features.btf_typedef_exists("btf_trace_sched_switch")  # cached answer
    assert features._btf_handle is None
    assert features.btf_typedef_exists("btf_trace_sched_wakeup")  # loads again
    assert not features.btf_typedef_exists("btf_trace_kpod_no_such_tracepoint")
    features.release_vmlinux_btf()
    features.release_vmlinux_btf()  # twice is harmless

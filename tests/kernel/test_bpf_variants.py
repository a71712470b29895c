"""Signal variants on the real kernel: the first variant whose programs all probe, pass
the verifier and attach wins; the others stay unloaded; a dark signal says why.

Each program of tests/bpf/variants.bpf.c marks its own key in the `hits` map, so the
oracle is the kernel's own record of which programs ran, not the loader's bookkeeping.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from kpodmetrics.bpf import features
from kpodmetrics.bpf.loader import BpfObject, LoadOptions
from kpodmetrics.bpf.variants import Signal, Variant
from tests.bpf_owned import map_names, prog_ids
from tests.conftest import require_root
from tests.kernel.bpf_build import built_object

pytestmark = pytest.mark.kernel

KEY = {"var_good_a": 1, "var_good_b": 2, "free_prog": 3, "var_noattach": 7, "var_nohook": 8}


@pytest.fixture(scope="module")
def variants_object() -> str:
    return built_object("variants")


def signal(*variants: tuple[str, str]) -> Signal:
    return Signal("sig", (), tuple(Variant(name, (prog,)) for name, prog in variants))


@pytest.fixture
def accept_missing_raw_tp(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Let the probe pass a raw tracepoint that does not exist: it loads (raw_tp has no
    target at load time) and the kernel refuses only the attach, as on a kernel whose
    hook vanished between probe and attach."""
    real = features.probe_section

    def probe(section: str) -> features.Probe:
        if section == "raw_tp/kpod_no_such_raw_tracepoint":
            return features.Probe(True)
        return real(section)

    monkeypatch.setattr(features, "probe_section", probe)
    yield


def start(path: str, opts: LoadOptions) -> BpfObject:
    """What collectors/ebpf/base.py does: load, attach, give way on refused attaches."""
    obj = BpfObject("variants", path, opts).load()
    obj.attach()
    while obj.refused_variants():
        obj.reload_without_refused()
        obj.attach()
    return obj


def hits_after_switches(obj: BpfObject) -> dict[int, int]:
    for _ in range(20):  # make sure context switches happen on this CPU
        time.sleep(0.005)
    read = obj.map("hits").read_and_reset()
    return {int.from_bytes(k, "little"): int.from_bytes(v, "little") for k, v in read.items()}


def kernel_names() -> set[str]:
    """Names of the programs this process holds fds of, as the kernel lists them
    (fdinfo gives the ids; other processes' programs do not count)."""
    ids = prog_ids(os.getpid())
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True,
                         check=True).stdout
    return {p.get("name", "") for p in json.loads(out) if p.get("id") in ids}


def test_first_working_variant_wins_and_only_it_runs(variants_object: str) -> None:
    require_root()
    sig = signal(("rejected", "var_rejected"), ("nohook", "var_nohook"),
                 ("a", "var_good_a"), ("b", "var_good_b"))
    opts = LoadOptions(signals=(sig,), only=frozenset(sig.programs | {"free_prog"}))
    with start(variants_object, opts) as obj:
        [state] = obj.settle_signals()
        assert state.variant == "a"
        assert "load failed" in state.failures["rejected"]
        assert "not in this kernel" in state.failures["nohook"]
        assert "b" not in state.failures  # never needed
        assert obj.programs["var_good_b"].reason == "not needed: signal sig uses variant a"
        got = hits_after_switches(obj)
        assert got.get(1, 0) > 0 and got.get(3, 0) > 0, got  # the winner and the free program
        assert 2 not in got, got  # the spare variant never ran
        loaded = kernel_names()
        assert "var_good_a" in loaded and "free_prog" in loaded
        assert "var_good_b" not in loaded and "var_rejected" not in loaded


def test_forced_variant_is_used_without_fallback(variants_object: str) -> None:
    require_root()
    sig = signal(("a", "var_good_a"), ("b", "var_good_b"))
    with start(variants_object, LoadOptions(signals=(sig,), only=sig.programs,
                                            forced_variants={"sig": "b"})) as obj:
        [state] = obj.settle_signals()
        assert state.variant == "b"
        got = hits_after_switches(obj)
        assert got.get(2, 0) > 0 and 1 not in got, got
    # a forced variant that cannot work leaves the signal dark: no silent fallback
    sig = signal(("a", "var_good_a"), ("nohook", "var_nohook"))
    with start(variants_object, LoadOptions(signals=(sig,), only=sig.programs,
                                            forced_variants={"sig": "nohook"})) as obj:
        [state] = obj.settle_signals()
        assert state.variant is None
        assert "not in this kernel" in state.failures["nohook"]
        assert 1 not in hits_after_switches(obj)


def test_variant_refused_at_attach_gives_way_to_the_next(variants_object: str,
                                                         accept_missing_raw_tp: None) -> None:
    require_root()
    sig = signal(("noattach", "var_noattach"), ("a", "var_good_a"))
    with start(variants_object, LoadOptions(signals=(sig,), only=sig.programs)) as obj:
        [state] = obj.settle_signals()
        assert state.variant == "a"
        assert "attach failed" in state.failures["noattach"]
        assert not obj.programs["var_noattach"].loaded
        got = hits_after_switches(obj)
        assert got.get(1, 0) > 0 and 7 not in got, got
        assert "var_noattach" not in kernel_names()


def test_dark_signal_reports_every_reason_and_the_rest_runs(variants_object: str) -> None:
    require_root()
    sig = signal(("rejected", "var_rejected"), ("nohook", "var_nohook"))
    with start(variants_object,
               LoadOptions(signals=(sig,), only=sig.programs | {"free_prog"})) as obj:
        [state] = obj.settle_signals()
        assert state.variant is None and not state.available
        assert "rejected: var_rejected: load failed" in state.reason
        assert "nohook: var_nohook: tracepoint" in state.reason
        got = hits_after_switches(obj)
        assert got.get(3, 0) > 0 and 8 not in got, got


def test_declarations_are_checked(variants_object: str) -> None:
    require_root()
    with pytest.raises(ValueError, match="does not contain"):
        BpfObject("variants", variants_object,
                  LoadOptions(signals=(signal(("x", "no_such_prog")),))).load()
    two = (Signal("s1", (), (Variant("a", ("var_good_a",)),)),
           Signal("s2", (), (Variant("a", ("var_good_a",)),)))
    with pytest.raises(ValueError, match="in signals"):
        BpfObject("variants", variants_object, LoadOptions(signals=two)).load()
    with pytest.raises(KeyError, match="no variant 'zz'"):
        BpfObject("variants", variants_object,
                  LoadOptions(signals=(signal(("a", "var_good_a")),), forced_variants={"sig": "zz"}))


def test_maps_of_unchosen_variants_are_not_created(variants_object: str) -> None:
    """A variant's own maps exist in the kernel only when that variant is chosen; the
    oracle is the kernel's list of maps this process holds."""
    require_root()
    sig = Signal("sig", (), (Variant("a", ("var_good_a",), maps=("only_a",)),
                             Variant("b", ("var_good_b",), maps=("only_b",))))
    with start(variants_object, LoadOptions(signals=(sig,), only=sig.programs)) as obj:
        assert obj.settle_signals()[0].variant == "a"
        held = map_names(os.getpid())
        assert "only_a" in held and "only_b" not in held, held
        assert "only_b" not in obj.maps
        assert hits_after_switches(obj).get(1, 0) > 0
        assert obj.map("only_a").read_all().count == 1
    with start(variants_object, LoadOptions(signals=(sig,), only=sig.programs,
                                            forced_variants={"sig": "b"})) as obj:
        held = map_names(os.getpid())
        assert "only_b" in held and "only_a" not in held, held
        assert hits_after_switches(obj).get(2, 0) > 0


def test_a_wrong_map_list_fails_loudly(variants_object: str) -> None:
    """A map listed by the wrong variant is not created for the one that needs it: its
    program fails the verifier and the variant is reported failed, never run half-fed."""
    require_root()
    sig = Signal("sig", (), (Variant("a", ("var_good_a",)),
                             Variant("b", ("var_good_b",), maps=("only_a", "only_b"))))
    with start(variants_object, LoadOptions(signals=(sig,), only=sig.programs)) as obj:
        [state] = obj.settle_signals()
        assert state.variant == "b"
        assert "var_good_a: load failed" in state.failures["a"], state.failures
    bad = (Signal("sig", (), (Variant("a", ("var_good_a",), maps=("no_such_map",)),)),)
    with pytest.raises(ValueError, match="names map 'no_such_map'"):
        BpfObject("variants", variants_object, LoadOptions(signals=bad)).load()

"""Honest availability: a family nothing feeds is reported (probe, kpod_signal_info,
kpod_collector_state, landing page) and never declared in the export.

Signal states are built by hand as the variant chooser leaves them (bpf/variants.py),
so each case states its own expected outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

import pytest

from kpodmetrics import availability, selfmetrics
from kpodmetrics.availability import State
from kpodmetrics.bpf.variants import Signal, SignalState, Variant
from kpodmetrics.collectors import registry
from kpodmetrics.collectors.base import CollectContext, CollectorUnavailable, MapHealth, ProgramStatus
from kpodmetrics.config import Settings
from kpodmetrics.families import Family, FamilyType
from kpodmetrics.samples import HistogramSample, Sample
from kpodmetrics.service import Agent

SENT = Family("kpod_test_av_sent_total", FamilyType.COUNTER, "sent")
RECV = Family("kpod_test_av_recv_total", FamilyType.COUNTER, "received")
RTT = Family("kpod_test_av_level", FamilyType.GAUGE, "fed by two signals")
SIG_SEND = Signal("av_send", (SENT, RTT), (Variant("tp", ("p_send",)), Variant("fentry", ("p_send_f",))))
SIG_RECV = Signal("av_recv", (RECV, RTT), (Variant("tp", ("p_recv",)),))


def state(sig: Signal, variant: str | None, **failures: str) -> SignalState:
    return SignalState(sig, variant, dict(failures))


def test_every_signal_fed_is_up_with_the_variant_and_its_passed_over_reason() -> None:
    rep = availability.report("net", (SENT, RECV, RTT), [
        state(SIG_SEND, "fentry", tp="tracepoint sock_send_length not in kernel"),
        state(SIG_RECV, "tp")], started=True)
    assert rep.state is State.UP and rep.reason == ""
    sent = {s.family.name: s for s in rep.sources}[SENT.name]
    assert (sent.available, sent.signal, sent.variant, sent.programs) == (
        True, "av_send", "fentry", ("p_send_f",))
    assert "sock_send_length" in sent.reason
    assert rep.live_families == (SENT, RECV, RTT)


def test_a_dark_signal_degrades_and_takes_only_its_own_families() -> None:
    rep = availability.report("net", (SENT, RECV, RTT), [
        state(SIG_SEND, None, tp="EACCES", fentry="EPERM"), state(SIG_RECV, "tp")],
        started=True)
    assert rep.state is State.DEGRADED and "av_send" in rep.reason
    by = {s.family.name: s for s in rep.sources}
    assert not by[SENT.name].available and by[SENT.name].reason == "av_send: tp: EACCES; fentry: EPERM"
    assert by[RECV.name].available
    assert by[RTT.name].available  # still fed by av_recv
    assert rep.live_families == (RECV, RTT)


def test_every_signal_dark_or_not_started_is_down() -> None:
    rep = availability.report("net", (SENT, RECV, RTT), [
        state(SIG_SEND, None, tp="x"), state(SIG_RECV, None, tp="y")], started=True)
    assert rep.state is State.DOWN and rep.live_families == ()
    rep = availability.report("net", (SENT,), [state(SIG_SEND, None, tp="x")], started=False,
                              reason="no program of net attached")
    assert rep.state is State.DOWN and rep.reason == "no program of net attached"
    assert rep.sources[0].reason == "av_send: tp: x"


def test_file_collector_families_have_no_signal() -> None:
    rep = availability.report("memory", (SENT,), [], started=True)
    assert rep.state is State.UP and rep.sources[0].signal == "" and rep.sources[0].available


def test_export_says_state_one_hot_and_signal_info_per_family() -> None:
    rep = availability.report("net", (SENT, RECV, RTT), [
        state(SIG_SEND, None, tp="EACCES"), state(SIG_RECV, "tp")], started=True)
    out = {(s.family.name, s.labels): s.value for s in selfmetrics.availability_samples([rep])}
    st = {dict(lab)["state"]: v for (name, lab), v in out.items()
          if name == "kpod_collector_state"}
    assert st == {"up": 0.0, "degraded": 1.0, "down": 0.0}
    info = {(dict(lab)["family"], dict(lab)["signal"]): dict(lab) for (name, lab) in out
            if name == "kpod_signal_info"}
    assert info[(SENT.name, "av_send")]["available"] == "false"
    assert info[(SENT.name, "av_send")]["reason"] == "av_send: tp: EACCES"
    assert info[(RECV.name, "av_recv")] | {} == {
        "collector": "net", "signal": "av_recv", "family": RECV.name, "available": "true",
        "variant": "tp", "program": "p_recv", "reason": ""}
    assert info[(RTT.name, "av_send,av_recv")]["available"] == "true"


class FakeBpf:
    """A collector whose start leaves `av_send` dark (as the base class would)."""

    name = "fakenet"
    families = (SENT, RECV, RTT)

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def start(self) -> None:
        if self.fail:
            raise CollectorUnavailable("no program of fakenet attached")

    def collect(self, ctx: CollectContext) -> Iterable[Sample | HistogramSample]:
        return []

    def close(self) -> None: ...
    def programs(self) -> Sequence[ProgramStatus]: return []
    def map_health(self) -> Sequence[MapHealth]: return []

    def signal_states(self) -> Sequence[SignalState]:
        return [state(SIG_SEND, None, tp="EACCES"),
                state(SIG_RECV, None if self.fail else "tp", tp="EPERM")]


def test_agent_declares_only_families_with_a_source(monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = {"fakenet": FakeBpf(), "fakedown": FakeBpf(fail=True)}
    monkeypatch.setattr(registry, "enabled_names", lambda s: list(fakes))
    monkeypatch.setattr(registry, "create", lambda name, s: fakes[name])
    agent = Agent(Settings(node_name="n"))
    try:
        asyncio.run(agent._start_collectors())
        declared = {f.name for f, _ in agent.store.snapshot()}
        assert RECV.name in declared and RTT.name in declared
        assert SENT.name not in declared  # no HELP/TYPE pretending zero events
        rows = {c: (st, why) for c, st, why in agent.landing_rows()}
        assert rows["fakenet"] == ("degraded", "no source for signals av_send")
        assert rows["fakedown"][0] == "down"
        sig = {(c, s): v for c, s, _, v, _ in agent.signal_rows()}
        assert sig == {("fakenet", "av_send"): "none", ("fakenet", "av_recv"): "tp",
                       ("fakedown", "av_send"): "none", ("fakedown", "av_recv"): "none"}
        states = {(dict(s.labels)["collector"], dict(s.labels)["state"]): s.value
                  for s in agent._export_self_samples() if s.family is selfmetrics.COLLECTOR_STATE}
        assert states[("fakenet", "degraded")] == 1.0 and states[("fakedown", "down")] == 1.0
    finally:
        agent.worker.close()

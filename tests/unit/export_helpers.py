"""Shared fixtures for export tests: a fake resolver and sample generators."""

from __future__ import annotations

from kpodmetrics.collectors.ebpf import runqueue as cpu
from kpodmetrics.pods.owner import Owner
from kpodmetrics.samples import HistogramSample, Kind, Sample


class FakeResolver:
    """cgroup id N -> pod pN in namespace ns(N % 7); `remove` marks owners gone."""

    owner_label_names = ("namespace", "pod", "container")

    def __init__(self) -> None:
        self.live: set[int] = set()
        self._removed: list[Owner] = []

    @staticmethod
    def owner(cid: int) -> Owner:
        return Owner(f"pod-{cid}", (("namespace", f"ns{cid % 7}"), ("pod", f"pod-{cid}"),
                                    ("container", "app")))

    def resolve(self, cgroup_id: int) -> Owner | None:
        return self.owner(cgroup_id) if cgroup_id in self.live else None

    def ignored(self, cgroup_id: int) -> bool:

        return False


    def drain_removed(self) -> list[Owner]:
        out, self._removed = self._removed, []
        return out

    def remove(self, cids: list[int]) -> None:
        for c in cids:
            self.live.discard(c)
            self._removed.append(self.owner(c))


def cycle_samples(cids: range | list[int], step: int = 1) -> list[Sample | HistogramSample]:
    """One cycle of cpu samples per cgroup: a run-queue histogram and two counters."""
    out: list[Sample | HistogramSample] = []
    for c in cids:
        slots = [0] * 32
        slots[(c + step) % 25] = 3 + c % 5
        slots[12] += step
        slots[31] = c % 2  # open-ended slot: only in +Inf
        total = sum(n * (2 ** k) for k, n in enumerate(slots[:31])) + slots[31] * 2**32
        out.append(HistogramSample(cpu.RUNQUEUE, c, tuple(slots), total))
        out.append(Sample(cpu.CONTEXT_SWITCHES, c, float(c % 11 + step), Kind.DELTA,
                          (("kind", "voluntary"),)))
        out.append(Sample(cpu.CONTEXT_SWITCHES, c, 1.5 * step, Kind.DELTA,
                          (("kind", "involuntary"),)))
    return out

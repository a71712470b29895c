"""ns per sched_switch event: this tree's cpu_sched object against runqlat, one run.

The per-event cost of the run-queue program is the budget the holder attribution
must stay within (issue: "<= runqlat's ns/event"). The full `make bench` measures
every program of the agent; this is the quick, focused version of its sched part:

    .venv/bin/python -m benchmarks.sched_cost [--rounds 3] [--ref REV] [--loops N]

Each round loads the configurations in one order and then in the reverse order (the
first program on a tracepoint takes the cache misses, see benchmarks/kernelcost.py),
runs `perf bench sched pipe`, and reads run_time_ns / run_cnt of every sched_switch
program with run-time statistics on for the workload only (bpfinfo.stats_enabled). `--ref REV` adds
the cpu_sched object committed at REV (e.g. HEAD~1) as a third configuration. A
round's figure per configuration is the sum over its two orders.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks import bpfinfo
from kpodmetrics.collectors.ebpf.runqueue import CpuSchedCollector

OBJECT = "src/kpodmetrics/bpf/objects/cpu_sched.bpf.o"


def _one_order(order: list[str], ref_dir: str | None, loops: int) -> dict[str, float]:
    """Load in `order`, run the workload, ns/event per configuration."""
    collectors: list[CpuSchedCollector] = []
    runqlat: subprocess.Popen[bytes] | None = None
    try:
        for who in order:
            if who == "runqlat":
                runqlat = subprocess.Popen(["runqlat"], stdout=subprocess.DEVNULL)
                time.sleep(3)  # attached well before the workload
                continue
            if who == "ref":
                assert ref_dir is not None
                os.environ["KPOD_BPF_DIR"] = ref_dir
            c = CpuSchedCollector()
            c.start()
            os.environ.pop("KPOD_BPF_DIR", None)
            collectors.append(c)
        with bpfinfo.stats_enabled():
            before = bpfinfo.programs()
            subprocess.run(["perf", "bench", "sched", "pipe", "-l", str(loops)],
                           capture_output=True, check=True)
            after = bpfinfo.programs()
    finally:
        for c in collectors:
            c.close()
        if runqlat is not None:
            runqlat.terminate()
            runqlat.wait()
    costs: list[float] = []
    for pid in sorted(after):  # ids grow in load order
        p, q = after[pid], before.get(pid, {})
        if "sched_switch" not in str(p.get("name", "")):
            continue
        n = int(p.get("run_cnt", 0)) - int(q.get("run_cnt", 0))  # type: ignore[call-overload]
        t = int(p.get("run_time_ns", 0)) - int(q.get("run_time_ns", 0))  # type: ignore[call-overload]
        if n > 1000:
            costs.append(t / n)
    if len(costs) != len(order):
        raise RuntimeError(f"expected {len(order)} sched_switch programs, saw {len(costs)}")
    return dict(zip(order, costs, strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--loops", type=int, default=300_000)
    ap.add_argument("--ref", help="git revision whose committed cpu_sched object to add")
    args = ap.parse_args()
    order = ["kpod", "runqlat"]
    with tempfile.TemporaryDirectory() as tmp:
        ref_dir = None
        if args.ref:
            blob = subprocess.run(["git", "show", f"{args.ref}:{OBJECT}"], capture_output=True,
                                  check=True).stdout
            Path(tmp, "cpu_sched.bpf.o").write_bytes(blob)
            ref_dir = tmp
            order.insert(1, "ref")
        totals = {w: 0.0 for w in order}
        for r in range(args.rounds):
            fwd = _one_order(order, ref_dir, args.loops)
            rev = _one_order(order[::-1], ref_dir, args.loops)
            line = {w: fwd[w] + rev[w] for w in order}
            for w in order:
                totals[w] += line[w]
            print(f"round {r + 1}: " + "  ".join(
                f"{w} {fwd[w]:.0f}+{rev[w]:.0f}={line[w]:.0f} ns" for w in order))
        print("all rounds: " + "  ".join(f"{w} {totals[w] / args.rounds / 2:.0f} ns/event"
                                         for w in order))


if __name__ == "__main__":
    main()

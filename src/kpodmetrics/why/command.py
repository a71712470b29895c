"""`kpod-metrics why <namespace>/<pod>` (or `--cgroup PATH`): two reads of the agent's
/metrics a window apart, the delays of one pod ranked by the time they cost it."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

from kpodmetrics.config import parse_duration
from kpodmetrics.why.owners import Owner, known_owners, parse_cgroup, parse_pod
from kpodmetrics.why.scrape import AgentUnreachable, LabelSet, Scrape, fetch
from kpodmetrics.why.signals import Finding, Window, assess, ranked

DEFAULT_URL = "http://localhost:9090"
CYCLES = "kpod_collection_cycle_duration_seconds_count"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pod", nargs="?", metavar="NAMESPACE/POD", help="the pod to explain")
    p.add_argument("--cgroup", metavar="PATH",
                   help="standalone agents: a cgroup path below the cgroup v2 root (its subtree)")
    p.add_argument("--url", default=DEFAULT_URL, help=f"the agent (default {DEFAULT_URL})")
    p.add_argument("--window", default="30s", type=_duration,
                   help="time between the two reads (default 30s; at least the agent's "
                        "poll interval)")


def _duration(text: str) -> float:
    try:
        v = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    if v <= 0:
        raise argparse.ArgumentTypeError("the window must be longer than 0")
    return v


def target_of(args: argparse.Namespace) -> Owner:
    if bool(args.pod) == bool(args.cgroup):
        raise ValueError("name exactly one of NAMESPACE/POD or --cgroup PATH")
    return parse_pod(args.pod) if args.pod else parse_cgroup(args.cgroup)


def run(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    try:
        target = target_of(args)
    except ValueError as exc:
        print(f"kpod-metrics why: {exc}", file=err)
        return 2
    try:
        first = fetch(args.url)
        # said at once: the answer takes a whole window, and a caller timing its own
        # view of the pod (a test's oracle) starts from this line
        print(f"kpod-metrics why: read {args.url}, reading again in {args.window:g} s",
              file=err, flush=True)
        time.sleep(args.window)
        second = fetch(args.url)
    except AgentUnreachable as exc:
        print(f"kpod-metrics why: {exc}", file=err)
        return 1
    return explain(target, first, second, args.url, out, err)


def explain(target: Owner, first: Scrape, second: Scrape, url: str,
            out: TextIO, err: TextIO) -> int:
    """Print the verdict for `target` from two scrapes; 1 when the target is unknown."""
    known = known_owners([first, second])
    if not any(target.matches(frozenset(o_labels(o))) for o in known):
        kind = "pod" if target.kubernetes else "cgroup"
        sample = ", ".join(sorted(str(o) for o in known if o.kubernetes == target.kubernetes
                                  and not str(o).startswith("__"))[:8])
        hint = f" (it knows e.g. {sample})" if sample else (
            " (it labels series by " + ("cgroup: use --cgroup" if target.kubernetes
                                        else "pod: use NAMESPACE/POD") + ")" if known else "")
        print(f"kpod-metrics why: {kind} {target} is unknown to the agent at {url}{hint}",
              file=err)
        return 1

    def resolve(labels: LabelSet, prefix: str) -> Owner | None:
        return target if target.matches(labels, prefix) else None

    win = Window(first, second, resolve)
    findings = ranked(assess(win, [target])[target])
    print(f"why {target}: {win.seconds:.1f} s between the agent's collections in two reads "
          f"of {url}", file=out)
    if second.series(CYCLES) and second.series(CYCLES) == first.series(CYCLES):
        print("  (the agent finished no collection cycle in between: the figures below "
              "are zero; use a --window longer than its poll interval)", file=out)
    for i, f in enumerate(f for f in findings if f.available):
        print(line(i + 1, f, win.seconds), file=out)
    missing = [f for f in findings if not f.available]
    partial = sorted({m for f in findings if f.available for m in f.missing})
    for f in missing:
        print(f"  -  {f.title}: not available from this agent ({', '.join(f.missing)})", file=out)
    if partial:
        print(f"  (not available from this agent: {', '.join(partial)})", file=out)
    return 0


def o_labels(o: Owner) -> tuple[tuple[str, str], ...]:
    if o.kubernetes:
        return (("namespace", o.namespace), ("pod", o.pod))
    return (("cgroup", o.cgroup),)


def line(rank: int, f: Finding, window: float) -> str:
    share = ""
    if f.seconds is not None and window > 0 and f.seconds > 0:
        share = f" ({f.seconds / window:.2f} s per second)"
    text = f"  {rank}. {f.title}: {f.summary or '-'}{share}"
    if f.parts:
        text += "; " + "; ".join(f.parts)
    return text

"""`kpod-metrics top`: this node's pods ranked by the delays `why` explains, live.

The terminal UI is Textual (an optional extra: `pip install 'kpod-metrics[top]'`), so
the agent's image never installs it. Each refresh reads /metrics once; the figures are
the differences between the last two reads, per second.
"""

from __future__ import annotations

import argparse
import sys

from kpodmetrics.why.command import DEFAULT_URL, _duration
from kpodmetrics.why.table import SORTABLE


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=DEFAULT_URL, help=f"the agent (default {DEFAULT_URL})")
    p.add_argument("--interval", default="5s", type=_duration,
                   help="refresh period (default 5s; the agent's figures move once per "
                        "poll interval)")
    p.add_argument("--sort", default="cpu", choices=SORTABLE, help="initial sort column")


def run(args: argparse.Namespace) -> int:
    try:
        from kpodmetrics.why.top_app import TopApp
    except ImportError as exc:
        print(f"kpod-metrics top needs its terminal UI library ({exc.name}): "
              "pip install 'kpod-metrics[top]'", file=sys.stderr)
        return 1
    TopApp(args.url, args.interval, args.sort).run()
    return 0

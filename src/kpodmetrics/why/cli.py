"""Sub-command wiring of `why` and `top`, kept here so cli.py stays one import each."""

from __future__ import annotations

import argparse
from typing import Any


def add_parsers(sub: Any) -> None:
    from kpodmetrics.why import command, top

    why = sub.add_parser("why", help="what is slowing a pod: its delays ranked by the time they cost")
    command.add_arguments(why)
    t = sub.add_parser("top", help="live view of this node's pods ranked by their delays")
    top.add_arguments(t)


def main(name: str, args: argparse.Namespace) -> int:
    if name == "why":
        from kpodmetrics.why import command

        return command.run(args)
    from kpodmetrics.why import top

    return top.run(args)

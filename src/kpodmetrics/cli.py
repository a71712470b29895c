"""Command line: `kpod-metrics run | probe | version | why | top`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from kpodmetrics import __version__, config


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kpod-metrics", description=__doc__)
    sub = p.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the agent")
    config.add_arguments(run)
    probe = sub.add_parser("probe", help="report which families this kernel lets each "
                                         "collector see, through which program variant")
    config.add_arguments(probe)
    probe.add_argument("--json", action="store_true", dest="probe_json",
                       help="machine-readable report: {families: {name: {available, ...}}}")
    sub.add_parser("version", help="print the version")
    from kpodmetrics.why import cli as why_cli

    why_cli.add_parsers(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    command = args.command or "run"
    if command == "version":
        print(f"kpod-metrics {__version__}")
        return 0
    if command in ("why", "top"):  # clients of a running agent: no agent configuration
        from kpodmetrics.why import cli as why_cli

        return why_cli.main(command, args)
    try:
        settings = config.load(vars(args))
    except config.ConfigError as exc:
        print(f"kpod-metrics: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if command == "probe":
        from kpodmetrics.probe import probe_json, probe_report

        print(probe_json(settings) if args.probe_json else probe_report(settings))
        return 0
    from kpodmetrics import malloc_tuning
    from kpodmetrics.service import StartupError, run

    malloc_tuning.tune()  # before the agent's threads exist
    try:
        asyncio.run(run(settings))
    except StartupError as exc:
        print(f"kpod-metrics: cannot start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0

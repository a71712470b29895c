"""`python -m kpodmetrics` entry point."""

from kpodmetrics.cli import main

raise SystemExit(main())

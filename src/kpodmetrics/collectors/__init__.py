"""One module per signal source. Each exposes a Collector (see base.py)."""

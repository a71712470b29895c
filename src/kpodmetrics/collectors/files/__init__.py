"""Collectors that read cgroup v2 files and /proc: one module per source file kind.

`support/` holds what they share (bounded reads, parsers, per-cgroup bookkeeping).
"""

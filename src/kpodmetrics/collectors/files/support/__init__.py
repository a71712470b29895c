"""Shared pieces of the cgroup-file collectors (diskio, iface, fs, memory, cpustat, pressure).

Parsers take raw bytes because every file read here is untrusted input: they never
raise, skip what they cannot understand and say how many lines they skipped, so the
collectors can count them in `kpod_cgroup_read_errors_total{collector}`.
"""

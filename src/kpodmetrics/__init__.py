"""kpod-metrics: per-pod kernel signals from eBPF and cgroup files."""

__version__ = "0.1.0"

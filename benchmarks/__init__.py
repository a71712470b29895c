"""Overhead and scale benchmarks for kpod-metrics (issue 9).

`python -m benchmarks.run` measures, in one run and as ratios against a baseline taken
in the same interleaved rounds: workload slowdown with the agent or a libbpf-tools peer
attached, in-kernel cost per event of every BPF program, userspace cost of a collection
cycle at growing cgroup counts, start-up time and kernel map memory. The numbers are
goals to report against, not test assertions: the machines are small and noisy.
"""

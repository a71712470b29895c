"""Collectors fed by BPF programs (ebpf/*.bpf.c): one module per program object."""

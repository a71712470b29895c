"""libbpf through cffi: object loading, feature probes, maps, per-program stats."""

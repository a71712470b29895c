"""Who owns a cgroup: standalone cgroup paths or Kubernetes pods and containers."""

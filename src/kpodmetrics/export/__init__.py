"""Series state and its two exits: Prometheus text on /metrics and OTLP push."""

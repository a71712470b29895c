"""Where OTLP metrics go, from the settings alone.

Kept apart from export/otlp.py so that deciding whether OTLP is on imports neither
the OTel SDK nor its exporter and protobuf (~20 MiB of RSS an agent without OTLP
never needs).
"""

from __future__ import annotations

from kpodmetrics.config import Settings


def metrics_url(settings: Settings) -> str:
    """The signal URL per the OTel spec: the metrics endpoint as-is, else base + /v1/metrics."""
    if settings.otlp_metrics_endpoint.strip():
        return settings.otlp_metrics_endpoint.strip()
    base = settings.otlp_endpoint.strip()
    if not base:
        return ""
    return base.rstrip("/") + "/v1/metrics"

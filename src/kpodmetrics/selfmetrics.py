"""The agent's own families: collection cost, collector state, BPF map and program
health, series budget, OTLP push health, build and configuration."""

from __future__ import annotations

import platform
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import version as _dist_version
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from kpodmetrics import __version__, families
from kpodmetrics.availability import CollectorReport, State
from kpodmetrics.bpf.stats import read_program_stats
from kpodmetrics.families import Family, FamilyType
from kpodmetrics.samples import Kind, Labels, Sample

if TYPE_CHECKING:
    from kpodmetrics.config import Settings
    from kpodmetrics.export.otlp import PushStats

NS = 1e-9

CYCLE = Family(
    "kpod_collection_cycle_duration_seconds", FamilyType.HISTOGRAM,
    "Wall time of one collection cycle (refresh, collect, fold, render)", unit="s",
    bucket_exponents=tuple(range(20, 35, 2)), scale=NS,
)
COLLECTOR_DURATION = Family(
    "kpod_collector_duration_seconds", FamilyType.GAUGE,
    "Wall time of the collector's last collect call", unit="s",
    label_names=("collector",),
)
COLLECTOR_UP = Family(
    "kpod_collector_up", FamilyType.GAUGE,
    "1 when the collector runs (also when degraded: see kpod_collector_state); 0 when it "
    "could not start (see kpod_collector_status_info)",
    label_names=("collector",),
)
COLLECTOR_STATUS = Family(
    "kpod_collector_status_info", FamilyType.GAUGE,
    "Why a collector or one of its BPF programs is down (value 1; reason label)",
    label_names=("collector", "program", "reason"),
)
COLLECTOR_ERRORS = Family(
    "kpod_collector_errors_total", FamilyType.COUNTER,
    "Collect calls that raised; the collector's data for that cycle is missing",
    label_names=("collector",),
)
CGROUP_READ_ERRORS = Family(
    "kpod_cgroup_read_errors_total", FamilyType.COUNTER,
    "cgroup or /proc inputs skipped for a cycle (unreadable, vanished, malformed)",
    label_names=("collector",),
)
COLLECTOR_TIMEOUTS = Family(
    "kpod_collector_timeouts_total", FamilyType.COUNTER,
    "Collect calls that overran their deadline (KPOD_COLLECTOR_TIMEOUT); the call goes on "
    "in its own thread and its result is folded into the first cycle after it returns",
    label_names=("collector",),
)
LAST_CYCLE_AGE = Family(
    "kpod_last_cycle_age_seconds", FamilyType.GAUGE,
    "Seconds since the last collection cycle completed, computed at scrape time "
    "(alert when it exceeds a few poll intervals)", unit="s",
)
UNRESOLVED = Family(
    "kpod_unresolved_samples_total", FamilyType.COUNTER,
    "Kernel samples whose cgroup id matched no known cgroup or pod",
)
MAP_ENTRIES = Family(
    "kpod_bpf_map_entries", FamilyType.GAUGE,
    "Entries read (and reset) from the BPF map in the last cycle",
    label_names=("map",),
)
MAP_CAPACITY = Family(
    "kpod_bpf_map_capacity", FamilyType.GAUGE, "max_entries of the BPF map",
    label_names=("map",),
)
MAP_WRITES = Family(
    "kpod_bpf_map_entries_written_total", FamilyType.COUNTER,
    "New entries the BPF programs inserted into the map", label_names=("map",),
)
MAP_ERRORS = Family(
    "kpod_bpf_map_update_errors_total", FamilyType.COUNTER,
    "Inserts into the BPF map that failed (map full or out of memory): data lost",
    label_names=("map",),
)
PROGRAM_RUN_SECONDS = Family(
    "kpod_bpf_program_run_seconds_total", FamilyType.COUNTER,
    "CPU time spent running the BPF program in the kernel (kernel BPF stats)", unit="s",
    label_names=("collector", "program"),
)
PROGRAM_RUNS = Family(
    "kpod_bpf_program_runs_total", FamilyType.COUNTER,
    "Times the BPF program ran (kernel BPF stats)",
    label_names=("collector", "program"),
)
PROGRAM_STATS_ENABLED = Family(
    "kpod_bpf_program_stats_enabled", FamilyType.GAUGE,
    "1 when per-program BPF stats are on (BPF_ENABLE_STATS fd held by the agent)",
)
SERIES = Family(
    "kpod_series", FamilyType.GAUGE,
    "Series currently exported per metric family (includes the overflow series)",
    label_names=("family",),
)
SERIES_DROPPED = Family(
    "kpod_series_dropped_total", FamilyType.COUNTER,
    "Distinct series refused by the cardinality budget; their data is folded into the "
    "family's __overflow__ series",
    label_names=("family",),
)
SERIES_LIMIT = Family(
    "kpod_series_limit", FamilyType.GAUGE,
    "Configured cardinality budget (0 = no limit) for all families together or per family",
    label_names=("scope",),
)
BUILD_INFO = Family(
    "kpod_build_info", FamilyType.GAUGE,
    "Agent build: version, Python and OpenTelemetry SDK versions (value 1)",
    label_names=("version", "python", "otel_sdk"),
)
CONFIG_INFO = Family(
    "kpod_config_info", FamilyType.GAUGE,
    "Effective configuration that shapes the series (value 1)",
    label_names=("mode", "profile", "collectors", "poll_interval_seconds", "max_series",
                 "max_series_per_family", "otlp"),
)
OTLP_EXPORTS = Family(
    "kpod_otlp_exports_total", FamilyType.COUNTER,
    "OTLP pushes attempted (each may include several HTTP attempts)",
)
OTLP_FAILURES = Family(
    "kpod_otlp_export_failures_total", FamilyType.COUNTER,
    "OTLP pushes that failed after the exporter's own retries",
)
OTLP_RETRIES = Family(
    "kpod_otlp_export_retries_total", FamilyType.COUNTER,
    "HTTP attempts beyond the first of each OTLP push (transient failures retried)",
)
OTLP_SKIPPED = Family(
    "kpod_otlp_exports_skipped_total", FamilyType.COUNTER,
    "Cycles without a push: the previous push still ran or back-off after failures",
)
OTLP_DURATION = Family(
    "kpod_otlp_export_duration_seconds", FamilyType.GAUGE,
    "Wall time of the last OTLP push (collect, encode, send, retries)", unit="s",
)
families.register(PROGRAM_RUN_SECONDS, PROGRAM_RUNS, PROGRAM_STATS_ENABLED, SERIES,
                  SERIES_DROPPED, SERIES_LIMIT, BUILD_INFO, CONFIG_INFO, OTLP_EXPORTS,
                  OTLP_FAILURES, OTLP_RETRIES, OTLP_SKIPPED, OTLP_DURATION)
MAP_EVICTIONS = Family(
    "kpod_bpf_map_evictions_total", FamilyType.COUNTER,
    "Entries a full LRU map dropped before they were read: their counts are lost "
    "(a lower bound; raise the map's max_entries)", label_names=("map",),
)
MAP_REAPED = Family(
    "kpod_bpf_map_reaped_entries_total", FamilyType.COUNTER,
    "Scratch-map entries of threads that no longer exist, deleted by the agent: calls "
    "whose end the kernel never reported (the thread died inside them); never counted "
    "as calls", label_names=("map",),
)
IGNORED = Family(
    "kpod_ignored_samples_total", FamilyType.COUNTER,
    "Kernel samples of known cgroups deliberately not exported (not a pod, or a "
    "filtered-out namespace)",
)
POD_WATCH_ERRORS = Family(
    "kpod_pod_watch_errors_total", FamilyType.COUNTER,
    "Failed list/watch calls to the Kubernetes API (retried with back-off)",
)
POD_WATCH_MALFORMED = Family(
    "kpod_pod_watch_malformed_total", FamilyType.COUNTER,
    "Pod objects or watch lines skipped because they were unusable",
)
POD_WATCH_RELISTS = Family(
    "kpod_pod_watch_relists_total", FamilyType.COUNTER,
    "Re-lists after 410 Gone (watch history expired)",
)
families.register(MAP_EVICTIONS, MAP_REAPED, IGNORED, POD_WATCH_ERRORS, POD_WATCH_MALFORMED,
                  POD_WATCH_RELISTS)
families.register(COLLECTOR_TIMEOUTS, LAST_CYCLE_AGE)
COLLECTOR_STATE = Family(
    "kpod_collector_state", FamilyType.GAUGE,
    "1 for the collector's state, 0 for the others: up (every family has a source), "
    "degraded (some families have no source on this kernel: see kpod_signal_info), down",
    label_names=("collector", "state"),
)
SIGNAL_INFO = Family(
    "kpod_signal_info", FamilyType.GAUGE,
    "Where each family of a kernel signal comes from (value 1): available=\"false\" means "
    "no program variant works on this kernel, so the family is absent rather than zero",
    label_names=("collector", "signal", "family", "available", "variant", "program", "reason"),
)
families.register(COLLECTOR_STATE, SIGNAL_INFO)

CONDITIONAL: dict[str, tuple[Family, ...]] = {
    "OTLP push is configured": (OTLP_EXPORTS, OTLP_FAILURES, OTLP_RETRIES, OTLP_SKIPPED,
                                OTLP_DURATION),
    "in Kubernetes mode": (POD_WATCH_ERRORS, POD_WATCH_MALFORMED, POD_WATCH_RELISTS),
    "a collector or one of its programs is down": (COLLECTOR_STATUS,),
    "the syscall collector deleted start entries of dead threads (hash variant, before "
    "5.13)": (MAP_REAPED,),
}
"""Self-metrics exported only under a condition (deploy/metric-names.txt marks them)."""
families.register(CYCLE, COLLECTOR_DURATION, COLLECTOR_UP, COLLECTOR_STATUS, COLLECTOR_ERRORS,
                  CGROUP_READ_ERRORS, UNRESOLVED, MAP_ENTRIES, MAP_CAPACITY, MAP_WRITES,
                  MAP_ERRORS)


# -- sample builders: the service calls these once per cycle ------------------------------


def _gauge(family: Family, value: float, labels: Labels = ()) -> Sample:
    return Sample(family, 0, value, Kind.GAUGE, labels)


def _counter(family: Family, value: float, labels: Labels = (), source: str = "") -> Sample:
    """A monotonic total we own: folded as a cumulative reading (reset-safe)."""
    return Sample(family, 0, value, Kind.CUMULATIVE, labels, source=source or family.name)


def info_samples(settings: Settings, mode: str, collectors: Sequence[str],
                 otlp_url: str) -> list[Sample]:
    """kpod_build_info, kpod_config_info and the configured budget (no secrets)."""
    otlp = urlsplit(otlp_url).netloc if otlp_url else ""  # host only: no path or userinfo
    otlp = otlp.rpartition("@")[2]
    return [
        _gauge(BUILD_INFO, 1.0, (("version", __version__),
                                 ("python", platform.python_version()),
                                 ("otel_sdk", _dist_version("opentelemetry-sdk")))),
        _gauge(CONFIG_INFO, 1.0, (
            ("mode", mode), ("profile", settings.profile), ("collectors", ",".join(collectors)),
            ("poll_interval_seconds", f"{settings.poll_interval:g}"),
            ("max_series", str(settings.max_series)),
            ("max_series_per_family", str(settings.max_series_per_family)),
            ("otlp", otlp))),
        _gauge(SERIES_LIMIT, float(settings.max_series), (("scope", "total"),)),
        _gauge(SERIES_LIMIT, float(settings.max_series_per_family), (("scope", "per_family"),)),
    ]


def series_samples(counts: Mapping[str, int], dropped: Mapping[str, int]) -> list[Sample]:
    """kpod_series{family} and kpod_series_dropped_total{family} (0 for every live family,
    so that rate() sees the first drop)."""
    out = [_gauge(SERIES, float(n), (("family", f),)) for f, n in sorted(counts.items())]
    for f in sorted(set(counts) | set(dropped)):
        out.append(_counter(SERIES_DROPPED, float(dropped.get(f, 0)), (("family", f),)))
    return out


def program_samples(enabled: bool, programs: Iterable[tuple[str, str, int]]) -> list[Sample]:
    """Run time and count per (collector, program, prog fd), read from fdinfo."""
    out = [_gauge(PROGRAM_STATS_ENABLED, 1.0 if enabled else 0.0)]
    if not enabled:
        return out
    for collector, program, fd in programs:
        st = read_program_stats(fd)
        if st is None:
            continue
        lab = (("collector", collector), ("program", program))
        out.append(_counter(PROGRAM_RUN_SECONDS, st[0] * NS, lab))
        out.append(_counter(PROGRAM_RUNS, float(st[1]), lab))
    return out


def availability_samples(reports: Iterable[CollectorReport]) -> list[Sample]:
    """kpod_collector_state (one-hot over up/degraded/down) and kpod_signal_info per
    family of every declared kernel signal (file collectors have none)."""
    out: list[Sample] = []
    for rep in reports:
        for st in State:
            out.append(_gauge(COLLECTOR_STATE, 1.0 if rep.state is st else 0.0,
                              (("collector", rep.name), ("state", st.value))))
        for src in rep.sources:
            if not src.signal:
                continue
            out.append(_gauge(SIGNAL_INFO, 1.0, (
                ("collector", rep.name), ("signal", src.signal), ("family", src.family.name),
                ("available", "true" if src.available else "false"), ("variant", src.variant),
                ("program", ",".join(src.programs)), ("reason", short_reason(src.reason)))))
    return out


def short_reason(reason: str, limit: int = 200) -> str:
    """One line of at most `limit` characters (a label value, not a log)."""
    reason = " ".join(reason.split())
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"


def otlp_samples(stats: PushStats | None) -> list[Sample]:
    if stats is None:
        return []
    return [
        _counter(OTLP_EXPORTS, float(stats.pushes)),
        _counter(OTLP_FAILURES, float(stats.failures)),
        _counter(OTLP_RETRIES, float(stats.retries)),
        _counter(OTLP_SKIPPED, float(stats.skipped)),
        _gauge(OTLP_DURATION, stats.last_duration),
    ]

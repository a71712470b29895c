"""Settings: one table of options, read from flags and KPOD_* environment variables.

Every option has one flag and one environment variable; flags win over the
environment, which wins over the defaults (so `KPOD_PORT=19191 make run` serves on
19191: the Makefile passes no flag unless asked to). All bad values are reported
together, one line per key, naming the key and what is accepted. An unknown KPOD_*
variable is an error too (a typo in the ConfigMap must not pass silently).

Validation is one explicit step, `check`, run by `load`: field ranges, export
settings, collector names (the registry), syscall names (this architecture), forced
program variants (the collectors' declared signals). Nothing registers a check by
being imported.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kpodmetrics import syscalls
from kpodmetrics.collectors import registry
from kpodmetrics.collectors.registry import PROFILES
from kpodmetrics.syscalls import DEFAULT_SYSCALLS

__all__ = [
    "DEFAULT_SYSCALLS",
    "OPTIONS",
    "PROFILES",
    "ConfigError",
    "Option",
    "Settings",
    "check",
    "load",
]


class ConfigError(ValueError):
    """One or more settings are invalid; the message has one line per key."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


# -- value parsers (raise ValueError with the accepted form) -----------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def parse_duration(text: str) -> float:
    """'30', '30s', '500ms', '2m' -> seconds."""
    m = _DURATION.match(str(text))
    if not m:
        raise ValueError("expected a duration such as 30s, 500ms or 2m")
    value = float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    return value


def parse_bool(text: str) -> bool:
    t = str(text).strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def parse_list(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in re.split(r"[,\s]+", str(text)) if p.strip())


def parse_int(text: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise ValueError("expected a whole number") from None


def parse_switches(text: str) -> dict[str, bool]:
    """'syscall=on,net=off' -> {'syscall': True, 'net': False}."""
    out: dict[str, bool] = {}
    for item in parse_list(text):
        name, sep, val = item.partition("=")
        if not sep:
            raise ValueError(f"expected name=on|off, got {item!r}")
        out[name.strip()] = parse_bool(val)
    return out


def parse_every(text: str) -> dict[str, int]:
    """'fs=4,iface=2' -> {'fs': 4, 'iface': 2} (names checked by `check`)."""
    out: dict[str, int] = {}
    for item in parse_list(text):
        name, sep, val = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"expected collector=cycles, got {item!r}")
        n = parse_int(val)
        if not 1 <= n <= 100:
            raise ValueError(f"{item!r}: cycles must be 1 to 100")
        out[name.strip()] = n
    return out


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        t = str(text).strip().lower()
        if t not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return t

    return parse


def _host_pid(text: str) -> str:
    t = str(text).strip().lower()
    if t in ("auto", "self") or t.isdigit():
        return t
    raise ValueError("expected auto, self or a pid")


# -- value parsers of the options below ------------------------------------------

MAX_POD_LABELS = 10
_LABEL_KEY = re.compile(
    r"^(?:[a-z0-9]([-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)


def parse_pod_labels(text: str) -> tuple[str, ...]:
    """Pod label keys copied onto series as label_<key>; bounded because every
    distinct value multiplies the series count."""
    keys = tuple(dict.fromkeys(parse_list(text)))
    bad = [k for k in keys if not _LABEL_KEY.match(k)]
    if bad:
        raise ValueError(f"not a Kubernetes label key: {', '.join(bad)}")
    if len(keys) > MAX_POD_LABELS:
        raise ValueError(f"at most {MAX_POD_LABELS} pod labels (got {len(keys)})")
    return keys


def parse_syscalls(text: str) -> tuple[str, ...]:
    """Syscall names (checked against this architecture by `check`); `none` or a
    lone comma is the empty list, which switches the syscall collector off (an empty
    string cannot be told apart from "unset" in an environment variable)."""
    names = tuple(dict.fromkeys(n.lower() for n in parse_list(text)))
    return () if names == ("none",) else names


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def parse_otlp_headers(text: str) -> dict[str, str]:
    """OTEL_EXPORTER_OTLP_HEADERS (comma-separated key=value, URL-encoded) -> headers.

    Errors name the position and the header key, never a value: values are usually
    credentials and must not reach logs."""
    from urllib.parse import unquote

    out: dict[str, str] = {}
    for i, item in enumerate(p for p in str(text).split(",") if p.strip()):
        name, sep, value = item.partition("=")
        name = unquote(name.strip())
        if not sep:
            raise ValueError(f"item {i + 1} has no '=' (expected key=value)")
        if not _HEADER_NAME.match(name):
            raise ValueError(f"item {i + 1}: {name[:40]!r} is not a valid HTTP header name")
        out[name] = unquote(value.strip())
    return out


def parse_variants(text: str) -> dict[str, str]:
    """'tcp_send=fentry,runqueue=raw_tp' -> {signal: variant} (checked by `check`)."""
    out: dict[str, str] = {}
    for item in parse_list(text):
        name, sep, val = item.partition("=")
        if not sep or not name.strip() or not val.strip():
            raise ValueError(f"expected signal=variant, got {item!r}")
        out[name.strip()] = val.strip()
    return out


# -- the option table ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Option:
    attr: str
    env: str
    flag: str
    parse: Callable[[str], Any]
    help: str


OPTIONS: list[Option] = [
    Option("mode", "KPOD_MODE", "--mode", _choice("auto", "standalone", "kubernetes"),
           "auto (Kubernetes when a cluster config is found), standalone or kubernetes"),
    Option("profile", "KPOD_PROFILE", "--profile", _choice(*PROFILES),
           "collector profile: minimal, standard (default) or comprehensive"),
    Option("collectors", "KPOD_COLLECTORS", "--collectors", parse_switches,
           "per-collector overrides, e.g. syscall=on,net=off"),
    Option("poll_interval", "KPOD_POLL_INTERVAL", "--poll-interval", parse_duration,
           "collection interval (default 30s)"),
    Option("read_every", "KPOD_READ_EVERY", "--read-every", parse_every,
           "read slow-moving collectors every N cycles, re-exporting their last reading "
           "in between, e.g. fs=4,iface=2 (default fs=4; =1 reads every cycle)"),
    Option("collector_timeout", "KPOD_COLLECTOR_TIMEOUT", "--collector-timeout", parse_duration,
           "deadline of one collector's collect call, after which it is counted in "
           "kpod_collector_timeouts_total and its result folded into a later cycle "
           "(default 0 = half the poll interval)"),
    Option("port", "KPOD_PORT", "--port", parse_int, "HTTP port for /metrics (default 9090)"),
    Option("address", "KPOD_ADDRESS", "--address", str, "HTTP bind address (default 0.0.0.0)"),
    Option("node_name", "NODE_NAME", "--node-name", str,
           "this node's name (required in Kubernetes mode; downward API)"),
    Option("kubeconfig", "KUBECONFIG", "--kubeconfig", str, "kubeconfig file (outside a cluster)"),
    Option("cgroup_root", "KPOD_CGROUP_ROOT", "--cgroup-root", str,
           "cgroup v2 root (default: auto-detect /sys/fs/cgroup or /sys/fs/cgroup/unified)"),
    Option("proc_root", "KPOD_PROC_ROOT", "--proc-root", str, "procfs of the host (default /proc)"),
    Option("grace_period", "KPOD_GRACE_PERIOD", "--grace-period", parse_duration,
           "how long a deleted pod/cgroup stays resolvable (default 5s)"),
    Option("grace_max_entries", "KPOD_GRACE_MAX_ENTRIES", "--grace-max-entries", parse_int,
           "grace cache size (default 10000)"),
    Option("unresolved", "KPOD_UNRESOLVED", "--unresolved", _choice("aggregate", "drop"),
           "kernel data of unknown cgroups: aggregate into one series (default) or drop"),
    Option("legacy_maps", "KPOD_BPF_LEGACY_MAPS", "--bpf-legacy-maps", parse_bool,
           "force the legacy get-next-key/lookup/delete map walk instead of batch ops"),
    Option("bpf_stats", "KPOD_BPF_STATS", "--bpf-stats", parse_bool,
           "per-program BPF run time (kpod_bpf_program_*): holds BPF_ENABLE_STATS, which "
           "times every BPF program on the node while the agent runs (default false)"),
    Option("host_pid", "KPOD_HOST_PID", "--host-pid", _host_pid,
           "pid in the proc root whose namespaces are the host's: auto (default: 1 when "
           "readable, else this process when the proc root is /proc), self, or a number"),
    Option("log_level", "KPOD_LOG_LEVEL", "--log-level",
           _choice("debug", "info", "warning", "error"), "log level (default info)"),
    # pod attribution (Kubernetes mode)
    Option("namespaces", "KPOD_NAMESPACES", "--namespaces", parse_list,
           "only export pods of these namespaces (names or globs; default all)"),
    Option("exclude_namespaces", "KPOD_EXCLUDE_NAMESPACES", "--exclude-namespaces", parse_list,
           "never export pods of these namespaces (names or globs; default none)"),
    Option("pod_labels", "KPOD_POD_LABELS", "--pod-labels", parse_pod_labels,
           f"pod labels copied onto series as label_<key> (at most {MAX_POD_LABELS})"),
    # syscall collector
    Option("syscalls", "KPOD_SYSCALLS", "--syscalls", parse_syscalls,
           "syscalls measured by the syscall collector, by name (default: "
           + ",".join(DEFAULT_SYSCALLS) + "; none: measure nothing)"),
    Option("bpf_variants", "KPOD_BPF_VARIANTS", "--bpf-variants", parse_variants,
           "pin kernel signals to one program variant each, e.g. tcp_send=fentry (no "
           "fallback: a refused variant leaves its signal dark; for diagnosis and tests)"),
    # export: cardinality budget and OTLP push
    Option("max_series", "KPOD_MAX_SERIES", "--max-series", parse_int,
           "ceiling on exported pod/cgroup series, all families together; beyond it new "
           "series fold into an __overflow__ series (default 100000; 0 = no limit)"),
    Option("max_series_per_family", "KPOD_MAX_SERIES_PER_FAMILY", "--max-series-per-family",
           parse_int, "the same ceiling per metric family (default 20000; 0 = no limit)"),
    Option("holder_top_k", "KPOD_HOLDER_TOP_K", "--holder-top-k", parse_int,
           "CPU holders kept by name per waiting pod/cgroup per cycle in "
           "kpod_cpu_runqueue_wait_by_holder_seconds_total; the rest are summed into "
           "holder __other__ (default 5)"),
    Option("otlp_endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT", "--otlp-endpoint", str,
           "OTLP/HTTP base URL (/v1/metrics is appended); enables OTLP push"),
    Option("otlp_metrics_endpoint", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
           "--otlp-metrics-endpoint", str, "full OTLP/HTTP metrics URL (wins over the base URL)"),
    Option("otlp_headers", "OTEL_EXPORTER_OTLP_HEADERS", "--otlp-headers", str,
           "headers for OTLP requests: key=value,key2=value2 (values URL-encoded)"),
    Option("otlp_protocol", "OTEL_EXPORTER_OTLP_PROTOCOL", "--otlp-protocol",
           _choice("http/protobuf"), "OTLP transport; only http/protobuf is supported"),
]


@dataclass
class Settings:
    mode: str = "auto"
    profile: str = "standard"
    collectors: dict[str, bool] = field(default_factory=dict)
    poll_interval: float = 30.0
    read_every: dict[str, int] = field(default_factory=dict)
    collector_timeout: float = 0.0
    port: int = 9090
    address: str = "0.0.0.0"
    node_name: str = ""
    kubeconfig: str = ""
    cgroup_root: str = ""
    proc_root: str = "/proc"
    grace_period: float = 5.0
    grace_max_entries: int = 10000
    unresolved: str = "aggregate"
    legacy_maps: bool = False
    log_level: str = "info"
    host_pid: str = "auto"
    bpf_stats: bool = False
    namespaces: tuple[str, ...] = ()
    exclude_namespaces: tuple[str, ...] = ()
    pod_labels: tuple[str, ...] = ()
    max_series: int = 100_000
    max_series_per_family: int = 20_000
    holder_top_k: int = 5
    otlp_endpoint: str = ""
    otlp_metrics_endpoint: str = ""
    otlp_headers: str = field(default="", repr=False)
    otlp_protocol: str = "http/protobuf"
    syscalls: tuple[str, ...] = DEFAULT_SYSCALLS
    bpf_variants: dict[str, str] = field(default_factory=dict)

    def validate(self) -> list[str]:
        """Cross-field and range checks; one message per bad key."""
        problems: list[str] = []
        if not (0.1 <= self.poll_interval <= 3600):
            problems.append(
                f"KPOD_POLL_INTERVAL/--poll-interval: {self.poll_interval:g}s is out of range "
                "(0.1s to 1h)"
            )
        if self.collector_timeout > self.poll_interval:
            problems.append(
                f"KPOD_COLLECTOR_TIMEOUT/--collector-timeout: {self.collector_timeout:g}s is "
                f"longer than the poll interval ({self.poll_interval:g}s)"
            )
        if not (0 <= self.port <= 65535):
            problems.append(f"KPOD_PORT/--port: {self.port} is not a TCP port (0-65535)")
        if self.grace_period < 0:
            problems.append("KPOD_GRACE_PERIOD/--grace-period: must not be negative")
        if self.holder_top_k < 1:
            problems.append("KPOD_HOLDER_TOP_K/--holder-top-k: must be at least 1")
        if self.grace_max_entries < 1:
            problems.append("KPOD_GRACE_MAX_ENTRIES/--grace-max-entries: must be at least 1")
        return problems

    @property
    def collector_deadline(self) -> float:
        """Seconds one collect call may take (KPOD_COLLECTOR_TIMEOUT, or half the interval)."""
        return self.collector_timeout or self.poll_interval / 2


def _check_export(settings: Settings) -> list[str]:
    problems = []
    for attr, key in (("max_series", "KPOD_MAX_SERIES/--max-series"),
                      ("max_series_per_family",
                       "KPOD_MAX_SERIES_PER_FAMILY/--max-series-per-family")):
        if getattr(settings, attr) < 0:
            problems.append(f"{key}: must be 0 (no limit) or a positive number of series")
    try:
        parse_otlp_headers(settings.otlp_headers)
    except ValueError as exc:
        problems.append(f"OTEL_EXPORTER_OTLP_HEADERS/--otlp-headers: {exc}")
    for attr, key in (("otlp_endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT/--otlp-endpoint"),
                      ("otlp_metrics_endpoint",
                       "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT/--otlp-metrics-endpoint")):
        url = getattr(settings, attr).strip()
        if url and not re.match(r"^https?://[^/\s]+", url):
            problems.append(f"{key}: {url!r} is not an http:// or https:// URL")
    return problems



def check(settings: Settings) -> list[str]:
    """The one validation step: every rule, one problem line per bad key."""
    return [*settings.validate(), *_check_export(settings),
            *registry.check_names(settings.collectors),
            *registry.check_every(settings.read_every),
            *syscalls.check_names(settings.syscalls),
            *registry.check_variants(settings.bpf_variants)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for opt in OPTIONS:
        parser.add_argument(opt.flag, dest=opt.attr, default=None, help=f"{opt.help} [{opt.env}]")


KNOWN_ENV_PREFIX = "KPOD_"
_IGNORED_ENV = {"KPOD_BPF_DIR", "KPOD_LIBBPF"}


def load(args: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from flags (`args`, None = unset) over environment over defaults."""
    env = os.environ if env is None else env
    args = args or {}
    settings = Settings()
    problems: list[str] = []
    known_envs = {o.env for o in OPTIONS}
    for key in sorted(env):
        if key.startswith(KNOWN_ENV_PREFIX) and key not in known_envs and key not in _IGNORED_ENV:
            problems.append(f"{key}: unknown setting (known: {', '.join(sorted(known_envs))})")
    for opt in OPTIONS:
        raw = args.get(opt.attr)
        source = opt.flag
        if raw is None:
            raw = env.get(opt.env)
            source = opt.env
        if raw is None or (isinstance(raw, str) and raw == "" and opt.env.startswith("KPOD_")):
            continue
        try:
            setattr(settings, opt.attr, opt.parse(raw))
        except ValueError as exc:
            problems.append(f"{source}: {raw!r} is invalid: {exc}")
    problems += check(settings)
    if problems:
        raise ConfigError(problems)
    return settings

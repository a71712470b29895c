"""The agent's own families: collection cost, collector state, BPF map health."""

from __future__ import annotations

from kpodmetrics import families
from kpodmetrics.families import Family, FamilyType

NS = 1e-9

CYCLE = Family(
    "kpod_collection_cycle_duration_seconds", FamilyType.HISTOGRAM,
    "Wall time of one collection cycle (refresh, collect, fold, render)", unit="s",
    bucket_exponents=tuple(range(20, 35, 2)), scale=NS, per_owner=False,
)
COLLECTOR_DURATION = Family(
    "kpod_collector_duration_seconds", FamilyType.GAUGE,
    "Wall time of the collector's last collect call", unit="s",
    label_names=("collector",), per_owner=False,
)
COLLECTOR_UP = Family(
    "kpod_collector_up", FamilyType.GAUGE,
    "1 when the collector runs; 0 when it could not start (see kpod_collector_status_info)",
    label_names=("collector",), per_owner=False,
)
COLLECTOR_STATUS = Family(
    "kpod_collector_status_info", FamilyType.GAUGE,
    "Why a collector or one of its BPF programs is down (value 1; reason label)",
    label_names=("collector", "program", "reason"), per_owner=False,
)
COLLECTOR_ERRORS = Family(
    "kpod_collector_errors_total", FamilyType.COUNTER,
    "Collect calls that raised; the collector's data for that cycle is missing",
    label_names=("collector",), per_owner=False,
)
CGROUP_READ_ERRORS = Family(
    "kpod_cgroup_read_errors_total", FamilyType.COUNTER,
    "cgroup or /proc inputs skipped for a cycle (unreadable, vanished, malformed)",
    label_names=("collector",), per_owner=False,
)
UNRESOLVED = Family(
    "kpod_unresolved_samples_total", FamilyType.COUNTER,
    "Kernel samples whose cgroup id matched no known cgroup or pod",
    per_owner=False,
)
MAP_ENTRIES = Family(
    "kpod_bpf_map_entries", FamilyType.GAUGE,
    "Entries read (and reset) from the BPF map in the last cycle",
    label_names=("map",), per_owner=False,
)
MAP_CAPACITY = Family(
    "kpod_bpf_map_capacity", FamilyType.GAUGE, "max_entries of the BPF map",
    label_names=("map",), per_owner=False,
)
MAP_WRITES = Family(
    "kpod_bpf_map_entries_written_total", FamilyType.COUNTER,
    "New entries the BPF programs inserted into the map", label_names=("map",), per_owner=False,
)
MAP_ERRORS = Family(
    "kpod_bpf_map_update_errors_total", FamilyType.COUNTER,
    "Inserts into the BPF map that failed (map full or out of memory): data lost",
    label_names=("map",), per_owner=False,
)
families.register(CYCLE, COLLECTOR_DURATION, COLLECTOR_UP, COLLECTOR_STATUS, COLLECTOR_ERRORS,
                  CGROUP_READ_ERRORS, UNRESOLVED, MAP_ENTRIES, MAP_CAPACITY, MAP_WRITES,
                  MAP_ERRORS)

"""The rows of `kpod-metrics top`: one per owner, the figures of `why` per second.

Pure computation over two scrapes, separate from the terminal UI so it is tested
without a terminal (and so `top` imports its UI library only when it runs).
"""

from __future__ import annotations

from dataclasses import dataclass

from kpodmetrics.why.owners import Owner, owner_of
from kpodmetrics.why.scrape import LabelSet, Scrape
from kpodmetrics.why.signals import Finding, Window, assess


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    title: str
    kind: str  # "rate": seconds per second; "count"; "text"


COLUMNS = (
    Column("owner", "POD", "text"),
    Column("cpu", "CPU STARVED s/s", "rate"),
    Column("holder", "BEHIND", "text"),
    Column("memory", "MEM STALL s/s", "rate"),
    Column("io", "IO STALL s/s", "rate"),
    Column("syscalls", "SYSCALL s/s", "rate"),
    Column("tcp", "RETRANS", "count"),
    Column("oom", "OOM", "count"),
)
SORTABLE = tuple(c.key for c in COLUMNS if c.kind != "text")
KEYS = {"c": "cpu", "m": "memory", "i": "io", "s": "syscalls", "t": "tcp", "o": "oom"}
"""Sort keys of the UI: the column's initial."""


@dataclass
class Row:
    owner: Owner
    values: dict[str, float | None]
    holder: str

    def cell(self, key: str) -> str:
        if key == "owner":
            return str(self.owner)
        if key == "holder":
            return self.holder
        v = self.values.get(key)
        if v is None:
            return "n/a"
        col = next(c for c in COLUMNS if c.key == key)
        return f"{v:.3f}" if col.kind == "rate" else str(int(v))


def _resolve(labels: LabelSet, prefix: str) -> Owner | None:
    return owner_of(labels, prefix)


def rows(prev: Scrape, cur: Scrape) -> list[Row]:
    """One row per owner with any delay signal in the window (rates per second)."""
    win = Window(prev, cur, _resolve)
    per = max(win.seconds, 1e-9)
    out = []
    for owner, findings in assess(win).items():
        by = {f.key: f for f in findings}
        values: dict[str, float | None] = {}
        for key in SORTABLE:
            f: Finding = by[key]
            if not f.available:
                values[key] = None
            elif COLUMN_KIND[key] == "rate":
                values[key] = (f.seconds or 0.0) / per
            else:
                values[key] = f.count
        cpu = by["cpu"]
        holder = ""
        if cpu.culprits:
            name, share = cpu.culprits[0]
            holder = f"{name} {share:.0%}"
        out.append(Row(owner, values, holder))
    return out


COLUMN_KIND = {c.key: c.kind for c in COLUMNS}


def sort_rows(table: list[Row], key: str) -> list[Row]:
    """Largest first; owners that cannot be measured on this column go last."""
    return sorted(table, key=lambda r: (r.values.get(key) is None, -(r.values.get(key) or 0.0),
                                        str(r.owner)))

"""The Textual application behind `kpod-metrics top` (imported only when it runs)."""

from __future__ import annotations

import asyncio
import time

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from kpodmetrics.why.scrape import AgentUnreachable, Scrape, fetch
from kpodmetrics.why.table import COLUMNS, KEYS, Row, rows, sort_rows


class TopApp(App[None]):
    """A table of owners, sorted by one column, refreshed every `interval` seconds."""

    TITLE = "kpod-metrics top"
    BINDINGS = [
        *(Binding(k, f"sort('{col}')", col) for k, col in KEYS.items()),
        Binding("q", "quit", "quit"),
    ]

    def __init__(self, url: str, interval: float, sort: str) -> None:
        super().__init__()
        self.url, self.interval, self.sort_key = url, interval, sort
        self.prev: Scrape | None = None
        self.table_rows: list[Row] = []

    def compose(self) -> ComposeResult:
        yield Static(self._status("reading the agent…"), id="status")
        yield DataTable(zebra_stripes=True, cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for col in COLUMNS:
            table.add_column(col.title, key=col.key)
        self.set_interval(self.interval, self.refresh_data)
        self.call_later(self.refresh_data)

    def _status(self, text: str) -> str:
        return f"{self.url}  sort: {self.sort_key}  {text}"

    async def refresh_data(self) -> None:
        status = self.query_one("#status", Static)
        try:
            cur = await asyncio.to_thread(fetch, self.url)
        except AgentUnreachable as exc:
            status.update(self._status(f"agent unreachable: {exc}"))
            return
        if self.prev is None:
            self.prev = cur
            status.update(self._status(f"first read done; figures after the next, in "
                                       f"{self.interval:g} s"))
            return
        self.table_rows = rows(self.prev, cur)
        self.prev = cur
        self._fill()
        status.update(self._status(f"{len(self.table_rows)} pods, "
                                   f"updated {time.strftime('%H:%M:%S')}"))

    def _fill(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for r in sort_rows(self.table_rows, self.sort_key):
            table.add_row(*(r.cell(c.key) for c in COLUMNS), key=str(r.owner))

    def action_sort(self, key: str) -> None:
        self.sort_key = key
        self._fill()
        status = self.query_one("#status", Static)
        status.update(self._status(f"{len(self.table_rows)} pods"))

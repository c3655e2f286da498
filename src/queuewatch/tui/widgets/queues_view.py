"""The Queues view (home): a summary band, the queue table and its keys (filter, sort,
internal queues, Enter for the detail, ``D`` for the queue's DLQ)."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import DataTable, Static

from queuewatch.monitor.model import Snapshot
from queuewatch.tui.format import count, out_rate, rate
from queuewatch.tui.widgets.queue_table import QueueTable, is_internal
from queuewatch.tui.widgets.status import with_poll_age
from queuewatch.tui.widgets.table_view import DrillDown, TableView


class QueuesView(TableView):
    BINDINGS = [
        Binding("s", "sort", "Sort"),
        Binding("S", "reverse_sort", "Reverse sort", show=False),
        Binding("i", "toggle_internal", "Internal queues", show=False),
        Binding("D", "open_dlq", "Its DLQ"),
        Binding("enter", "open", "Detail", show=False),
    ]
    FILTER_HINT = "filter queues by name (Enter keeps it, Esc clears it)"

    def compose(self) -> ComposeResult:
        yield Static("", id="summary-band")
        yield Static("", id="queues-help", classes="view-help")
        yield self.filter_box()
        yield QueueTable(id="queue-table")

    def table(self) -> Widget:
        return self.query_one(QueueTable)

    def apply(self, snapshot: Snapshot) -> None:
        self.query_one(QueueTable).apply(snapshot)
        self.query_one("#summary-band", Static).update(summary_band(snapshot))

    def show_help(self, poll_age: float | None) -> None:
        table = self.query_one(QueueTable)
        table.age_offset = poll_age or 0.0
        if poll_age:
            table.refresh()
        self.query_one("#queues-help", Static).update(with_poll_age(table.summary(), poll_age))

    def filter_changed(self) -> None:
        self.show_help(None)

    # -- actions -------------------------------------------------------------------------
    def action_sort(self) -> None:
        self.query_one(QueueTable).cycle_sort()
        self.show_help(None)

    def action_reverse_sort(self) -> None:
        table = self.query_one(QueueTable)
        table.set_sort(table.sort_column, not table.sort_reverse)
        self.show_help(None)

    def action_toggle_internal(self) -> None:
        table = self.query_one(QueueTable)
        table.set_show_internal(not table.show_internal)
        self.show_help(None)

    def action_open(self) -> None:
        name = self.query_one(QueueTable).selected_name
        if name:
            self.post_message(DrillDown("queue", name))

    def action_open_dlq(self) -> None:
        table = self.query_one(QueueTable)
        q = table.stats(table.selected_name or "")
        if q is None:
            return
        if q.is_dlq:
            self.post_message(DrillDown("dlq", q.name))
        elif q.dlq:
            self.post_message(DrillDown("dlq", q.dlq))
        else:
            self.app.notify(f"{q.name} has no dead-letter queue that queuewatch knows of",
                            severity="warning")

    @on(DataTable.RowSelected, "#queue-table")
    def _open(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.post_message(DrillDown("queue", str(event.row_key.value)))


def summary_band(snap: Snapshot) -> Text:
    """One line over the table: totals of the vhost, the way an overview starts."""
    queues = [q for q in snap.queues if not is_internal(q.name)]
    jobs = [q for q in queues if not q.is_dlq]
    ready = sum(q.ready or 0 for q in jobs)
    unacked = sum(q.unacked or 0 for q in jobs)
    dead = sum(q.ready or 0 for q in queues if q.is_dlq)
    busy = sum(1 for w in snap.workers if w.in_flight)
    crit = sum(1 for a in snap.alerts if a.severity == "critical")
    t = Text(" ")
    for label, value, style in (
        ("queues", str(len(queues)), ""), ("ready", count(ready), ""),
        ("unacked", count(unacked), ""),
        ("in", f"{rate(sum(q.publish_rate for q in jobs))}/s", ""),
        ("out", f"{rate(sum(out_rate(q) for q in jobs))}/s", ""),
        ("dead", count(dead), "bold yellow" if dead else ""),
        ("workers", f"{busy} busy/{len(snap.workers) - busy} idle", ""),
        ("alerts", f"{len(snap.alerts)} ({crit} crit)", "bold red" if crit else ""),
    ):
        t.append(f"{label} ", style="dim")
        t.append(value, style=style or "bold")
        t.append("  ")
    return t

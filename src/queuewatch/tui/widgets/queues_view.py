"""The Queues view (home): a summary band, the queue table and its keys (filter, sort,
internal queues, Enter for the detail, ``D`` for the queue's DLQ, and the queue actions of
:mod:`~queuewatch.tui.widgets.queue_actions`), and ``c``: the overview chart of the vhost's
totals over time (:mod:`~queuewatch.tui.widgets.overview_chart`), shown by itself on a
terminal of 40 rows or more."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import DataTable, ProgressBar, Static

from queuewatch.monitor.model import Snapshot
from queuewatch.tui.format import count, out_rate, rate
from queuewatch.tui.widgets.overview_chart import MIN_ROWS, OverviewChart
from queuewatch.tui.widgets.queue_actions import QUEUE_ACTION_BINDINGS, QueueActions
from queuewatch.tui.widgets.queue_table import QueueTable, is_internal
from queuewatch.tui.widgets.status import with_poll_age
from queuewatch.tui.widgets.table_view import DrillDown, TableView

if TYPE_CHECKING:
    from queuewatch.tui.source import DataSource


class QueuesView(QueueActions, TableView):
    BINDINGS = [
        Binding("s", "sort", "Sort"),
        Binding("S", "reverse_sort", "Reverse sort", show=False),
        Binding("i", "toggle_internal", "Internal queues", show=False),
        Binding("D", "open_dlq", "DLQ"),
        Binding("c", "toggle_chart", "Chart", show=False),
        *QUEUE_ACTION_BINDINGS,
        Binding("enter", "open", "Detail", show=False),
    ]
    FILTER_HINT = "filter queues by name (Enter keeps it, Esc clears it)"

    def __init__(self, source: DataSource | None = None, clock: Callable[[], float] = time.time,
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.source = source
        self.clock = clock
        self.chart_shown: bool | None = None
        """The overview chart as ``c`` left it; None: shown when the terminal has the rows."""
        self._taken_at = 0.0

    def action_queue(self) -> str | None:
        """The queue the queue actions apply to: the highlighted one."""
        return self.query_one(QueueTable).selected_name

    def compose(self) -> ComposeResult:
        yield Static("", id="summary-band", markup=False)
        yield OverviewChart(id="overview-chart")
        yield Static("", id="queues-help", classes="view-help", markup=False)
        yield ProgressBar(id="move-progress", show_eta=False)
        yield self.filter_box()
        yield QueueTable(id="queue-table")

    def table(self) -> Widget:
        return self.query_one(QueueTable)

    def apply(self, snapshot: Snapshot) -> None:
        self.query_one(QueueTable).apply(snapshot)
        self.query_one("#summary-band", Static).update(SummaryBand(summary_items(snapshot)))
        self._taken_at = snapshot.taken_at
        self._draw_chart()

    def _draw_chart(self) -> None:
        """Show or hide the overview chart, and draw it when shown (the totals are the history's,
        summed once per poll: nothing here walks the queues)."""
        chart = self.query_one(OverviewChart)
        shown = self.chart_shown
        if shown is None:
            shown = self.app.size.height >= MIN_ROWS
        chart.display = shown
        if shown and self.source is not None and self._taken_at:
            chart.show(self.source.totals(), self._taken_at)

    def on_resize(self, event: events.Resize) -> None:
        if self.chart_shown is None:
            self._draw_chart()

    def show_help(self, poll_age: float | None) -> None:
        table = self.query_one(QueueTable)
        table.age_offset = poll_age or 0.0
        if poll_age:
            table.refresh()
        if not self._taken_at:  # no poll has answered yet: nothing is known, not "0 queues"
            self.query_one("#queues-help", Static).update(NO_DATA_YET)
            return
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

    def action_toggle_chart(self) -> None:
        self.chart_shown = not self.query_one(OverviewChart).display
        self._draw_chart()

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


#: The help line until a poll has answered (a broker that cannot be reached at start is not
#: a vhost with no queues).
NO_DATA_YET = " no data yet: waiting for the first poll of the management API"

Item = tuple[str, str, str]
"""A summary band item: label, value, style of the value."""


def summary_items(snap: Snapshot) -> list[Item]:
    """The totals of the vhost, the way an overview starts, most important first."""
    shown = ready = unacked = dead = 0
    rate_in = rate_out = 0.0
    for q in snap.queues:  # one pass: 50,000 queues are 50,000 steps per refresh
        if is_internal(q.name):
            continue
        shown += 1
        if q.is_dlq:
            dead += q.ready or 0
        else:
            ready += q.ready or 0
            unacked += q.unacked or 0
            rate_in += q.publish_rate
            rate_out += out_rate(q)
    workers, workers_style = worker_counts(snap)
    crit = sum(1 for a in snap.alerts if a.severity == "critical")
    return [
        ("queues", str(shown), ""), ("ready", count(ready), ""),
        ("unacked", count(unacked), ""),
        ("in", f"{rate(rate_in)}/s", ""), ("out", f"{rate(rate_out)}/s", ""),
        ("dead", count(dead), "bold yellow" if dead else ""),
        ("workers", workers, workers_style),
        ("alerts", f"{len(snap.alerts)} ({crit} crit)", "bold red" if crit else ""),
    ]


#: Worker states that say nothing about what a worker does now, in the order the band names them.
_NOT_HEARD = ("hung", "unknown", "stale", "gone")


def worker_counts(snap: Snapshot) -> tuple[str, str]:
    """``1 busy/2 idle`` among the workers heard from lately; the others by state
    (``1 busy/1 idle, 1 hung``; ``2 unknown`` while our heartbeat feed is down): the last
    in-flight list of a worker gone, hung or not heard lately is old news, not "busy"."""
    busy = idle = 0
    other: dict[str, int] = {}
    for w in snap.workers:
        state = w.state
        if state in _NOT_HEARD:
            other[state] = other.get(state, 0) + 1
        elif w.in_flight:
            busy += 1
        else:
            idle += 1
    parts = [f"{busy} busy/{idle} idle"] if busy or idle or not other else []
    parts += [f"{other[s]} {s}" for s in _NOT_HEARD if s in other]
    style = "bold red" if "hung" in other else "bold yellow" if other else ""
    return ", ".join(parts), style


def summary_band(snap: Snapshot, width: int | None = None) -> Text:
    """One line over the table: :func:`summary_items`, each whole or not at all within
    ``width`` (a narrow terminal drops the last ones rather than cutting one in half:
    "workers 1 busy/0" read as something else; the alerts are on the bottom line too)."""
    return fit(summary_items(snap), width)


def fit(items: list[Item], width: int | None) -> Text:
    t = Text(" ")
    for label, value, style in items:
        if width is not None and len(t) + len(label) + 1 + len(value) > width:
            break
        t.append(f"{label} ", style="dim")
        t.append(value, style=style or "bold")
        t.append("  ")
    return t


class SummaryBand:
    """The band as a renderable: fitted to the width it is drawn at (resizes included)."""

    def __init__(self, items: list[Item]) -> None:
        self.items = items

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield fit(self.items, options.max_width)

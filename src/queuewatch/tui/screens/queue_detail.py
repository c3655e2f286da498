"""One queue in detail: depth and rate charts with a time axis from the kept history (which
survives a restart: :mod:`queuewatch.monitor.history_file`), limits, alerts."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Label, ProgressBar, Static

from queuewatch.monitor.history import HistoryPoint
from queuewatch.monitor.model import Alert, QueueStats, Snapshot, fmt_duration
from queuewatch.tui.chart import span_text
from queuewatch.tui.failures import ReportsFailures
from queuewatch.tui.format import (
    SEVERITY_STYLE,
    count,
    eta_text,
    fill_text,
    oldest_text,
    rate,
    state_text,
)
from queuewatch.tui.source import ConsumerInfo, DataSource
from queuewatch.tui.widgets.footer import PinnedFooter
from queuewatch.tui.widgets.queue_actions import QUEUE_ACTION_BINDINGS, QueueActions
from queuewatch.tui.widgets.status import stale_text
from queuewatch.tui.widgets.time_chart import TimeChart


class QueueDetailScreen(QueueActions, ReportsFailures, Screen[None]):
    BINDINGS = [Binding("escape,backspace", "app.pop_screen", "Back"),
                Binding("D", "open_dlq", "DLQ"), *QUEUE_ACTION_BINDINGS]

    def __init__(self, name: str, source: DataSource | None = None, read_only: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.queue_name = name
        self.source = source
        self.read_only = read_only
        self.clock = clock

    def action_queue(self) -> str | None:
        return self.queue_name

    def compose(self) -> ComposeResult:
        yield Label(f" Queue {self.queue_name}", id="detail-title", markup=False)
        yield Static("", id="detail-stale", markup=False)
        with Horizontal(id="detail-body"):
            with VerticalScroll(id="detail-facts"):
                yield Static("", id="detail-stats", markup=False)
                yield Static("", id="detail-limits", markup=False)
                yield Static("", id="detail-consumers", markup=False)
                yield Static("", id="detail-alerts", markup=False)
            with Vertical(id="detail-charts"):
                yield Label("Depth (ready + unacked)", classes="chart-title", id="depth-title", markup=False)
                yield TimeChart(style="yellow", id="chart-depth")
                yield Label("In/s (publish)", classes="chart-title", id="in-title", markup=False)
                yield TimeChart(style="cyan", id="chart-in")
                yield Label("Out/s (ack)", classes="chart-title", id="out-title", markup=False)
                yield TimeChart(style="green", id="chart-out")
        yield ProgressBar(id="move-progress", show_eta=False)
        yield PinnedFooter()

    def on_mount(self) -> None:
        self.load_consumers()

    def action_open_dlq(self) -> None:
        """``D``: this queue's dead letters in the DLQ browser."""
        snapshot = getattr(self.app, "snapshot", None)
        q = None if snapshot is None else snapshot.queue(self.queue_name)
        dlq = self.queue_name if q is not None and q.is_dlq else (q.dlq if q else None)
        if not dlq:
            self.app.notify(f"{self.queue_name} has no dead-letter queue that queuewatch knows of",
                            severity="warning")
            return
        self.app.pop_screen()
        self.app.main.drill("dlq", dlq)

    @work(group="consumers", exclusive=True, exit_on_error=False)
    async def load_consumers(self) -> None:
        source = getattr(self.app, "source", None)
        if source is None:
            return
        consumers = await source.consumers(self.queue_name)
        self.query_one("#detail-consumers", Static).update(_consumers(consumers))

    def show_staleness(self, age: float | None, error: str | None) -> None:
        """While polls fail (or one hangs), say how old the numbers are and dim them: this
        screen has no header, and frozen data is never shown as current."""
        line = self.query_one("#detail-stale", Static)
        line.set_class(age is not None, "visible")
        self.query_one("#detail-body").set_class(age is not None, "stale")
        if age is not None:
            line.update(f" {stale_text(age)}: as of the last poll"
                        + (f" · {error}" if error else " · the management API has not answered"))

    def show(self, snapshot: Snapshot, history: Sequence[HistoryPoint]) -> None:
        q = snapshot.queue(self.queue_name)
        if q is None:
            self.query_one("#detail-stats", Static).update(
                Text("This queue no longer exists.", style="bold red")
            )
            # (its limits, consumers and alerts were those of a queue that is gone)
            for part in ("#detail-limits", "#detail-consumers", "#detail-alerts"):
                self.query_one(part, Static).update("")
            return
        self.query_one("#detail-stats", Static).update(_stats(q))
        self.query_one("#detail-limits", Static).update(_limits(q))
        alerts = [a for a in snapshot.alerts if a.target == q.name]
        self.query_one("#detail-alerts", Static).update(_alerts(alerts))
        for wid, field, title, label in (
            ("chart-depth", "total", "depth-title", "Depth (ready + unacked)"),
            ("chart-in", "publish_rate", "in-title", "In/s (publish)"),
            ("chart-out", "ack_rate", "out-title", "Out/s (ack)"),
        ):
            data = [(p.taken_at, float(getattr(p, field))) for p in history]
            window = self.query_one(f"#{wid}", TimeChart).plot(data, snapshot.taken_at)
            fmt = "{:.0f}" if field == "total" else "{:.1f}"
            last = fmt.format(data[-1][1]) if data else "-"
            peak = fmt.format(max(v for _, v in data)) if data else "-"
            self.query_one(f"#{title}", Label).update(
                f"{label}: now {last}, max {peak} · last {span_text(window)}"
            )


def _row(t: Text, key: str, value: str, style: str = "") -> None:
    t.append(f"  {key:<18}", style="bold")
    t.append(f"{value}\n", style=style)


def _stats(q: QueueStats) -> Text:
    t = Text()
    t.append("Now\n", style="bold underline")
    _row(t, "type / state", f"{q.type} / {state_text(q)}")
    _row(t, "ready", count(q.ready))
    _row(t, "unacked", count(q.unacked))
    util = "-" if q.consumer_utilisation is None else f"{q.consumer_utilisation * 100:.0f}%"
    _row(t, "consumers", f"{q.consumers} (utilisation {util})",
         "bold red" if q.consumers == 0 and q.ready else "")
    _row(t, "in / out / ack", f"{rate(q.publish_rate)} / {rate(q.deliver_rate)} / {rate(q.ack_rate)} per s")
    _row(t, "redeliveries", f"{rate(q.redeliver_rate)} per s")
    _row(t, "oldest message", oldest_text(q))
    _row(t, "drain ETA", eta_text(q))
    _row(t, "full in", fmt_duration(q.full_eta) if q.max_length else "-")
    _row(t, "DLQ", f"{q.dlq} ({count(q.dlq_depth)} messages)" if q.dlq else "-")
    return t


def _limits(q: QueueStats) -> Text:
    t = Text()
    t.append("\nLimits\n", style="bold underline")
    _row(t, "priority levels", str(q.max_priority) if q.max_priority else "none")
    _row(t, "max length", fill_text(q) if q.max_length else "none")
    _row(t, "max bytes", str(q.max_length_bytes) if q.max_length_bytes else "none")
    _row(t, "overflow", q.overflow or "drop-head (default)")
    dlx = q.dead_letter_exchange
    _row(t, "dead-letter exch.", "none" if dlx is None else (dlx or "(default)"))
    if q.dead_letter_routing_key:
        _row(t, "dead-letter key", q.dead_letter_routing_key)
    _row(t, "stuck after", fmt_duration(q.stuck_after) if q.stuck_after else "-")
    return t


def _consumers(consumers: Sequence[ConsumerInfo]) -> Text:
    t = Text()
    t.append(f"\nConsumers ({len(consumers)})\n", style="bold underline")
    if not consumers:
        t.append("  none\n", style="dim")
    for c in consumers[:20]:
        ack = "manual ack" if c.ack_required else "auto-ack"
        state = "" if c.active else " (inactive)"
        t.append(f"  {c.connection[:24]:<24} prefetch {c.prefetch:<4} {ack}{state}\n")
    if len(consumers) > 20:
        t.append(f"  … and {len(consumers) - 20} more\n", style="dim")
    return t


def _alerts(alerts: list[Alert]) -> Text:
    t = Text()
    t.append("\nAlerts\n", style="bold underline")
    if not alerts:
        t.append("  none\n", style="green")
    for a in alerts:
        t.append(f"  ▲ {a.severity}: {a.reason}\n", style=SEVERITY_STYLE.get(a.severity, ""))
    return t

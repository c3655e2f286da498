"""The queuewatch console: a Textual app over a :class:`~queuewatch.tui.source.DataSource`.

Polls run in a Textual worker and never overlap: the next one is scheduled with
``set_timer`` when the last one ends. A failed poll leaves the UI up, shows the error and a
retry countdown, and the next poll recovers by itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Input, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from queuewatch.config import Settings
from queuewatch.errors import QueuewatchError
from queuewatch.monitor.model import Snapshot
from queuewatch.tui.commands import help_sections, palette_commands
from queuewatch.tui.messages import SnapshotReady
from queuewatch.tui.screens.dialogs import HelpScreen, PickScreen
from queuewatch.tui.screens.queue_detail import QueueDetailScreen
from queuewatch.tui.source import DataSource
from queuewatch.tui.staleness import poll_age, show_staleness
from queuewatch.tui.widgets.dlq_view import DlqView
from queuewatch.tui.widgets.queue_table import QueueTable
from queuewatch.tui.widgets.status import AlertsStrip, ErrorLine, StatusBar, with_poll_age
from queuewatch.tui.widgets.views import AlertsView, StuckView, WorkersView

VIEWS = ("queues", "workers", "stuck", "dlq", "alerts")
#: Retry delays after failed polls (seconds), capped by the poll interval.
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)


class QueuewatchApp(App[None]):
    CSS_PATH = "queuewatch.tcss"
    TITLE = "queuewatch"
    BINDINGS = [
        Binding("1", "view('queues')", "Queues"),
        Binding("2", "view('workers')", "Workers"),
        Binding("3", "view('stuck')", "Stuck"),
        Binding("4", "view('dlq')", "DLQ"),
        Binding("5", "view('alerts')", "Alerts"),
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort", "Sort"),
        Binding("S", "reverse_sort", "Reverse", show=False),
        Binding("i", "toggle_internal", "Show/hide internal queues", show=False),
        Binding("v", "pick_vhost", "Vhost"),
        Binding("ctrl+r", "refresh", "Refresh", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self, settings: Settings, source: DataSource, clock: Callable[[], float] = time.time,
        poll_interval: float | None = None, exit_after: float | None = None,
        screenshot: str | None = None,
    ) -> None:
        super().__init__()
        self.exit_after = exit_after
        self.screenshot_path = screenshot
        self._exit_requested = False
        self.settings = settings
        self.source = source
        self.clock = clock
        self.read_only = settings.read_only or source.read_only
        self.poll_interval = poll_interval if poll_interval is not None else settings.poll_interval
        self.snapshot: Snapshot | None = None
        self.error: QueuewatchError | None = None
        self.failures = 0
        self.polls_done = 0
        self._next_poll: Timer | None = None

    # -- layout --------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        status = StatusBar(self.source.display_url, self.source.vhost, self.clock, id="status")
        status.read_only = self.read_only
        self._status = status
        yield status
        yield ErrorLine("", id="error")
        with TabbedContent(id="views", initial="queues"):
            with TabPane("1 Queues", id="queues"):
                yield Static("", id="queues-help", classes="view-help")
                yield Input(placeholder="filter queues by name (Esc clears)", id="filter")
                yield QueueTable(id="queue-table")
            with TabPane("2 Workers", id="workers"):
                yield WorkersView(self.clock, id="workers-view")
            with TabPane("3 Stuck jobs", id="stuck"):
                yield StuckView(self.clock, id="stuck-view")
            with TabPane("4 DLQ", id="dlq"):
                yield DlqView(self.source, self.read_only, id="dlq-view")
            with TabPane("5 Alerts", id="alerts"):
                yield AlertsView(id="alerts-view")
        yield AlertsStrip("", id="alerts-strip")
        yield Footer()

    @property
    def main(self) -> Screen[Any]:
        """The screen holding the views (``query_one`` on the app searches the active screen,
        which may be a dialog or the queue detail)."""
        return self._status.screen

    def on_mount(self) -> None:
        self.main.query_one(StatusBar).show()
        self.main.query_one(QueueTable).focus()
        self.set_interval(1.0, self._tick)
        if self.exit_after is not None:
            self.set_timer(self.exit_after, self._exit_after)
        self.poll_now()

    # -- polling -------------------------------------------------------------------------
    @property
    def _views_alive(self) -> bool:
        """False while the app shuts down (late timers and worker events then do nothing)."""
        return self._status.is_attached and not self._exit_requested

    def poll_now(self) -> None:
        """Start a poll unless one is running; polls never overlap."""
        if not self._views_alive:
            return
        if self._next_poll is not None:
            self._next_poll.stop()
            self._next_poll = None
        if any(w.group == "poll" and w.is_running for w in self.workers):
            return
        self.main.query_one(StatusBar).polling = True
        self._poll()

    @work(group="poll", exit_on_error=False)
    async def _poll(self) -> None:
        snapshot = await self.source.poll()
        self.post_message(SnapshotReady(snapshot))

    def _schedule(self, delay: float) -> None:
        status = self.main.query_one(StatusBar)
        status.retry_at = self.clock() + delay if self.error is not None else None
        self._next_poll = self.set_timer(delay, self.poll_now)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place errors of background work are handled."""
        worker = event.worker
        if event.state not in (WorkerState.SUCCESS, WorkerState.ERROR) or not self._views_alive:
            return
        if worker.group == "poll":
            self.main.query_one(StatusBar).polling = False
            if event.state == WorkerState.SUCCESS:
                self.error, self.failures = None, 0
                self._show_error(None)
                self._schedule(self.poll_interval)
            else:
                self.failures += 1
                self.error = _as_error(worker.error)
                self._show_error(str(self.error))
                delay = RETRY_DELAYS[min(self.failures, len(RETRY_DELAYS)) - 1]
                self._schedule(min(delay, max(self.poll_interval, 1.0)))
            self.main.query_one(StatusBar).show()
        elif event.state == WorkerState.ERROR:
            err = _as_error(worker.error)
            if not isinstance(worker.error, QueuewatchError):
                self.log.error(f"{worker.name} failed: {worker.error!r}")
            self.notify(str(err), title="Action failed", severity="error", timeout=10)
            self.main.query_one(DlqView).action_failed(str(err))

    def _show_error(self, text: str | None) -> None:
        status = self.main.query_one(StatusBar)
        status.error = text
        status.display_url = self.source.display_url
        self._show_staleness()

    def _show_staleness(self) -> None:
        """Say how old the data on screen is (see :mod:`queuewatch.tui.staleness`)."""
        show_staleness(self.main, self.error, self.snapshot, self.clock())
        self._queues_help()

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        if self._views_alive:
            self.apply_snapshot(message.snapshot)

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Update every view from ``snapshot`` (benchmarks time this call)."""
        self.snapshot = snapshot
        self.polls_done += 1
        status = self.main.query_one(StatusBar)
        status.snapshot = snapshot
        status.show()
        self.main.query_one(QueueTable).apply(snapshot)
        self._queues_help()
        self.main.query_one(WorkersView).apply(snapshot, self.read_only)
        self.main.query_one(StuckView).apply(snapshot, self.read_only)
        self.main.query_one(AlertsView).apply(snapshot, self.read_only)
        self.main.query_one(DlqView).apply(snapshot)
        self.main.query_one(AlertsStrip).show_alerts(snapshot.alerts)
        if isinstance(self.screen, QueueDetailScreen):
            self.screen.show(snapshot, self.source.history(self.screen.queue_name))

    def _queues_help(self) -> None:
        summary = self.main.query_one(QueueTable).summary()
        age = poll_age(self.error, self.snapshot, self.clock())
        self.main.query_one("#queues-help", Static).update(with_poll_age(summary, age))

    def action_toggle_internal(self) -> None:
        table = self.main.query_one(QueueTable)
        table.set_show_internal(not table.show_internal)
        self._queues_help()

    def _exit_after(self) -> None:
        if self.screenshot_path:
            path = Path(self.screenshot_path)
            self.save_screenshot(path.name, str(path.parent.resolve()))
        self.exit()

    def _tick(self) -> None:
        if not self._views_alive:
            return
        self.main.query_one(StatusBar).show()
        self._show_staleness()

    # -- actions -------------------------------------------------------------------------
    def action_view(self, view: str) -> None:
        self.main.query_one(TabbedContent).active = view
        if view == "dlq":
            self.main.query_one(DlqView).reload()
        pane = self.main.query_one(f"#{view}", TabPane)
        tables = pane.query(DataTable)
        if tables:
            tables.first().focus()

    @property
    def active_view(self) -> str:
        return str(self.main.query_one(TabbedContent).active)

    def action_filter(self) -> None:
        if self.active_view == "dlq":
            self.main.query_one(DlqView).focus_filter()
            return
        self.action_view("queues")
        box = self.main.query_one("#filter", Input)
        box.add_class("visible")
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.main.query_one(QueueTable).set_filter(event.value.strip())
        self._queues_help()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        self.main.query_one(QueueTable).focus()

    def on_key(self, event: object) -> None:
        key = getattr(event, "key", "")
        box = self.main.query_one("#filter", Input)
        if key == "escape" and box.has_focus:
            box.value = ""
            box.remove_class("visible")
            self.main.query_one(QueueTable).focus()

    def action_sort(self) -> None:
        self.main.query_one(QueueTable).cycle_sort()
        self._queues_help()

    def action_reverse_sort(self) -> None:
        table = self.main.query_one(QueueTable)
        table.set_sort(table.sort_column, not table.sort_reverse)
        self._queues_help()

    def action_refresh(self) -> None:
        self.poll_now()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(help_sections()))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield from palette_commands(self)

    @on(DataTable.RowSelected, "#queue-table")
    def _open_queue(self, event: DataTable.RowSelected) -> None:
        name = str(event.row_key.value)
        screen = QueueDetailScreen(name)
        self.push_screen(screen)
        if self.snapshot is not None:
            screen.call_after_refresh(screen.show, self.snapshot, self.source.history(name))

    @work(group="vhosts", exit_on_error=False)
    async def action_pick_vhost(self) -> None:
        names = await self.source.vhosts()
        choice = await self.push_screen_wait(PickScreen("Switch vhost", names, self.source.vhost))
        if choice and choice != self.source.vhost:
            self.source.set_vhost(choice)
            status = self.main.query_one(StatusBar)
            status.vhost, status.snapshot = choice, None
            self.snapshot = None
            self.main.query_one(DlqView).reset()
            self.poll_now()

    async def action_quit(self) -> None:
        self.exit()

    def exit(self, *args: Any, **kwargs: Any) -> None:
        self._exit_requested = True
        super().exit(*args, **kwargs)

    async def on_unmount(self) -> None:
        await self.source.aclose()


def _as_error(exc: BaseException | None) -> QueuewatchError:
    if isinstance(exc, QueuewatchError):
        return exc
    return QueuewatchError(f"unexpected {type(exc).__name__}: {exc}")

"""The console's main screen: the status line, the five views in tabs, the alerts strip and
the footer. View keys live here and in the views, not on the app, so a dialog or the queue
detail shows only its own keys (plus help and quit)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable, TabbedContent, TabPane

from queuewatch.tui.schedules_source import schedules_for
from queuewatch.tui.screens.job import JobPrompt, JobScreen
from queuewatch.tui.widgets.dlq_view import DlqView
from queuewatch.tui.widgets.footer import PinnedFooter
from queuewatch.tui.widgets.job_views import BusyView, ScheduledView
from queuewatch.tui.widgets.keyed_table import KeyedTable
from queuewatch.tui.widgets.queues_view import QueuesView
from queuewatch.tui.widgets.schedules_view import SchedulesView
from queuewatch.tui.widgets.status import AlertsStrip, ErrorLine, StatusBar
from queuewatch.tui.widgets.table_view import DrillDown
from queuewatch.tui.widgets.views import AlertsView, StuckView, WorkersView

if TYPE_CHECKING:
    from queuewatch.tui.app import QueuewatchApp
    from queuewatch.tui.source import DataSource

#: (id, tab title) of each view, in key order: ``1`` is the first.
VIEWS = (("queues", "Queues"), ("workers", "Workers"), ("stuck", "Stuck jobs"),
         ("dlq", "DLQ browser"), ("alerts", "Alerts"), ("busy", "Busy"),
         ("scheduled", "Scheduled/Retries"), ("schedules", "Schedules"))
#: Below this width the tabs lose their left padding (one space between two titles), so all
#: eight titles fit in 80 columns (86 cells with Textual's padding, 78 without).
TIGHT_TABS_BELOW = 88

class MainScreen(Screen[None]):
    BINDINGS = [
        *(Binding(str(i), f"view('{view}')", title, show=False)
          for i, (view, title) in enumerate(VIEWS, 1)),
        Binding("v", "pick_vhost", "Vhost", show=False),
        Binding("o", "open_job", "Job by id", show=False),
    ]

    def __init__(self, source: DataSource, read_only: bool, clock: Callable[[], float]) -> None:
        super().__init__()
        self.source = source
        self.read_only = read_only
        self.clock = clock

    def compose(self) -> ComposeResult:
        status = StatusBar(self.source.display_url, self.source.vhost, self.clock, id="status")
        status.read_only = self.read_only
        yield status
        yield ErrorLine("", id="error", markup=False)
        ro, clock = self.read_only, self.clock
        with TabbedContent(id="views", initial="queues"):
            with TabPane("1 Queues", id="queues"):
                yield QueuesView(self.source, clock, read_only=ro, id="queues-view")
            with TabPane("2 Workers", id="workers"):
                yield WorkersView(clock, read_only=ro, id="workers-view")
            with TabPane("3 Stuck jobs", id="stuck"):
                yield StuckView(clock, read_only=ro, id="stuck-view")
            with TabPane("4 DLQ", id="dlq"):
                yield DlqView(self.source, ro, clock, id="dlq-view")
            with TabPane("5 Alerts", id="alerts"):
                yield AlertsView(clock, read_only=ro, id="alerts-view")
            with TabPane("6 Busy", id="busy"):
                yield BusyView(clock, read_only=ro, id="busy-view")
            with TabPane("7 Scheduled", id="scheduled"):
                yield ScheduledView(self.source, clock, read_only=ro, id="scheduled-view")
            with TabPane("8 Schedules", id="schedules"):
                yield SchedulesView(schedules_for(self.source), clock, read_only=ro,
                                    id="schedules-view")
        yield AlertsStrip("", id="alerts-strip", markup=False)
        yield PinnedFooter()

    def on_mount(self) -> None:
        self.set_class(self.app.size.width < TIGHT_TABS_BELOW, "tight-tabs")
        self.query_one("#queue-table").focus()
        cast("QueuewatchApp", self.app).main_ready()

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.width < TIGHT_TABS_BELOW, "tight-tabs")

    @property
    def active_view(self) -> str:
        return str(self.query_one(TabbedContent).active)

    def view_widget(self, view: str | None = None) -> Widget:
        pane = self.query_one(f"#{view or self.active_view}", TabPane)
        return pane.children[0] if pane.children else pane

    def action_view(self, view: str) -> None:
        self.query_one(TabbedContent).active = view
        self._dlq_shown(view == "dlq")
        self._scheduled_shown(view == "scheduled")
        self._schedules_shown(view == "schedules")
        tables = self.query_one(f"#{view}", TabPane).query(DataTable)
        if tables:
            tables.first().focus()

    @on(TabbedContent.TabActivated)
    def _tab_clicked(self, event: TabbedContent.TabActivated) -> None:
        self._dlq_shown(event.pane.id == "dlq")
        self._scheduled_shown(event.pane.id == "scheduled")
        self._schedules_shown(event.pane.id == "schedules")

    def _schedules_shown(self, shown: bool) -> None:
        """The Schedules view reads the schedule streams only while it is shown."""
        view = self.query_one(SchedulesView)
        if shown and not view.active:
            view.opened()
        elif not shown and view.active:
            view.closed()

    def _scheduled_shown(self, shown: bool) -> None:
        """The Scheduled view reads the job events only while it is shown."""
        view = self.query_one(ScheduledView)
        if shown and not view.active:
            view.opened()
        elif not shown:
            view.closed()

    def _dlq_shown(self, shown: bool) -> None:
        """The DLQ browser reads by itself only while it is shown."""
        dlq = self.query_one(DlqView)
        if shown and not dlq.active:
            dlq.opened()
        elif not shown:
            dlq.closed()

    def action_filter(self) -> None:
        """``/`` from anywhere: the filter of the view shown."""
        view = self.view_widget()
        if hasattr(view, "action_filter"):
            view.action_filter()

    def action_pick_vhost(self) -> None:
        cast("QueuewatchApp", self.app).action_pick_vhost()

    def action_open_job(self) -> None:
        """``o``: ask for a job id, then show its timeline."""
        def opened(job_id: str | None) -> None:
            if job_id:
                self.drill("job", job_id)
        self.app.push_screen(JobPrompt(), opened)

    # -- drill-down ----------------------------------------------------------------------
    @on(DrillDown)
    def _drill(self, event: DrillDown) -> None:
        event.stop()
        self.drill(event.kind, event.target)

    def drill(self, kind: str, target: str) -> None:
        """Show ``target`` where it is best seen: a queue's detail, a DLQ in the browser, a
        worker or a job in its view."""
        if kind == "queue" or kind in ("oldest_age", "fill", "orphaned", "stalled",
                                       "queue_down", "replicas", "not_consuming"):
            if target.endswith(".dlq") and kind != "queue":
                kind = "dlq"
            else:
                cast("QueuewatchApp", self.app).open_queue(target)
                return
        if kind in ("dlq", "dlq_growth"):
            self.action_view("dlq")
            self.query_one(DlqView).choose(target)
        elif kind in ("worker", "hung_worker", "worker_not_consuming"):
            self._select("workers", target)
        elif kind == "stuck_job":
            self._select("stuck", target)
        elif kind == "job":
            self.app.push_screen(JobScreen(target, self.source.job_status))
        elif kind == "worker-jobs":
            self.action_view("stuck")
            self.query_one(StuckView).action_filter()
            self.query_one("#stuck-view .view-filter").value = target  # type: ignore[attr-defined]
            self.query_one("#stuck-table").focus()

    def _select(self, view: str, key: str) -> None:
        self.action_view(view)
        table = self.query_one(f"#{view}", TabPane).query_one(KeyedTable)
        if key in table.keys:
            table.move_cursor(row=table.keys.index(key))

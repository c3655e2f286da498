"""What the help screen and the command palette list: built from the bindings themselves."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from textual.app import SystemCommand
from textual.binding import Binding, BindingType

from queuewatch.tui.format import QUEUE_COLUMNS

if TYPE_CHECKING:
    from queuewatch.tui.app import QueuewatchApp

KEY_NAMES = {"question_mark": "?", "slash": "/", "colon": ":", "space": "space", "escape": "Esc",
             "enter": "Enter", "ctrl+r": "Ctrl+R"}


def key_text(key: str) -> str:
    return " / ".join(KEY_NAMES.get(k, k) for k in key.split(","))


def _rows(bindings: Iterable[BindingType]) -> list[tuple[str, str]]:
    out = []
    for b in bindings:
        binding = b if isinstance(b, Binding) else Binding(*b)
        out.append((key_text(binding.key), binding.description))
    return out


def help_sections() -> list[tuple[str, list[tuple[str, str]]]]:
    """Every binding, grouped by where it works."""
    from queuewatch.tui.app import QueuewatchApp
    from queuewatch.tui.command_bar import offered
    from queuewatch.tui.screens.dialogs import ConfirmScreen
    from queuewatch.tui.screens.main import VIEWS, MainScreen
    from queuewatch.tui.screens.queue_detail import QueueDetailScreen
    from queuewatch.tui.widgets.dlq_view import DlqView
    from queuewatch.tui.widgets.job_views import BusyView, ScheduledView
    from queuewatch.tui.widgets.queues_view import QueuesView
    from queuewatch.tui.widgets.schedules_view import SchedulesView
    from queuewatch.tui.widgets.views import AlertsView, StuckView, WorkersView

    return [
        ("Everywhere", [*_rows(QueuewatchApp.BINDINGS), ("Ctrl+P", "command palette")]),
        ("Main screen", [(f"1-{len(VIEWS)}", "switch view"),
                         *_rows(MainScreen.BINDINGS[len(VIEWS):])]),
        ("Tables", [("j / ↓  k / ↑", "down, up"), ("g / G", "first, last row"),
                    ("/", "filter the view (Enter keeps it, Esc clears it)"),
                    ("click header", "sort queues by that column")]),
        ("Queues (1)", [("Enter", "the queue's detail"), *_rows(QueuesView.BINDINGS[:-1])]),
        ("Queue detail", _rows(QueueDetailScreen.BINDINGS)),
        ("Workers (2)", _rows(WorkersView.BINDINGS)),
        ("Stuck jobs (3)", _rows(StuckView.BINDINGS)),
        ("DLQ browser (4)", [*_rows(DlqView.BINDINGS[2:]),
                             ("/", "filter: text, type:ValueError, reason:failed (Esc clears)"),
                             ("b, then e", "export the highlighted cause to a file")]),
        ("Alerts (5)", _rows(AlertsView.BINDINGS)),
        ("Busy (6)", _rows(BusyView.BINDINGS)),
        ("Scheduled/Retries (7)", _rows(ScheduledView.BINDINGS)),
        ("Schedules (8)", _rows(SchedulesView.BINDINGS)),
        ("Command bar (:)", [(c.usage, c.help) for c in offered(v for v, _t in VIEWS)]
         + [("Tab / →", "complete (commands, queue and DLQ names)"), ("Esc", "close")]),
        ("Confirmation", _rows(ConfirmScreen.BINDINGS)),
    ]


def palette_commands(app: QueuewatchApp) -> Iterable[SystemCommand]:
    """Views, sorting, vhost and (unless read-only) the DLQ/worker actions, for Ctrl+P; each
    says its key."""
    from queuewatch.tui.screens.main import VIEWS
    from queuewatch.tui.widgets.dlq_view import DlqView
    from queuewatch.tui.widgets.job_views import ScheduledView
    from queuewatch.tui.widgets.queues_view import QueuesView
    from queuewatch.tui.widgets.schedules_view import SchedulesView
    from queuewatch.tui.widgets.views import StuckView, WorkersView

    for i, (view, title) in enumerate(VIEWS, 1):
        yield SystemCommand(f"View: {title}  ({i})", f"show the {title} view",
                            _call(app.action_view, view))
    for c in QUEUE_COLUMNS:
        yield SystemCommand(f"Sort queues by {c.label}", "largest first (again to reverse)",
                            _call(_sort, app, c.key), discover=False)
    yield SystemCommand("Filter this view  (/)", "type part of a row; Esc clears",
                        app.action_filter)
    yield SystemCommand("Command bar  (:)", ":queues, :queue NAME, :dlq NAME, :job ID...",
                        app.action_command_bar)
    yield SystemCommand("Switch vhost  (v)", "poll another virtual host", app.action_pick_vhost)
    yield SystemCommand("Refresh now  (Ctrl+R)", "poll the broker now", app.action_refresh)
    yield SystemCommand("Help  (?)", "every key binding", app.action_help)
    yield SystemCommand("Screenshot", f"save an SVG under {app.settings.state_dir}/screenshots",
                        app.action_screenshot_to_state)
    yield SystemCommand("Quit  (q)", "leave the console", app.action_quit)
    queues = app.main.query_one(QueuesView)
    yield SystemCommand("Queue: peek highlighted  (p)", "its first messages, read and put back",
                        _call(_in_view, app, "queues", queues.action_peek_queue))
    dlq = app.main.query_one(DlqView)
    yield SystemCommand("DLQ: pick a DLQ  (p)", "choose the DLQ to browse", dlq.action_pick_dlq)
    yield SystemCommand("DLQ: export  (e)", "write every dead letter to a JSONL file",
                        dlq.action_export)
    if app.read_only:
        return
    for title, what, action in (
            ("purge  (X)", "remove its ready messages (the count is asked)", "purge_queue"),
            ("move to another queue  (m)", "confirmed publish, then ack", "move_queue"),
            ("pause/resume  (P)", "workers stop/start taking its jobs", "pause_queue"),
            ("publish a test job  (t)", "through the producer", "test_job")):
        yield SystemCommand(f"Queue: {title}", what,
                            _call(_in_view, app, "queues", getattr(queues, f"action_{action}")))
    yield SystemCommand("DLQ: replay marked  (r)", "dry run, confirm, replay",
                        dlq.action_replay_selected)
    yield SystemCommand("DLQ: replay filtered  (R)", "every dead letter matching the filter",
                        dlq.action_replay_filtered)
    yield SystemCommand("DLQ: delete marked  (d)", "dry run, confirm, delete",
                        dlq.action_delete_selected)
    yield SystemCommand("Workers: terminate selected hung worker  (t)", "local hung workers only",
                        app.main.query_one(WorkersView).action_terminate)
    yield SystemCommand("Stuck jobs: cancel selected job  (c)", "the worker parks it in the DLQ",
                        app.main.query_one(StuckView).action_cancel_job)
    scheduled = app.main.query_one(ScheduledView)
    yield SystemCommand("Scheduled: cancel selected job  (c)", "workers skip it when it comes up",
                        _call(_in_view, app, "scheduled", scheduled.action_cancel_scheduled))
    yield SystemCommand("Scheduled: run selected job now  (n)", "publish it now, skip its delay",
                        _call(_in_view, app, "scheduled", scheduled.action_run_now))
    schedules = app.main.query_one(SchedulesView)
    for title, what, action in (
            ("add  (a)", "cron or every N s; confirmed, audited", "add"),
            ("change selected  (e)", "its timing, queue, payload...", "edit"),
            ("pause/resume selected  (p)", "no tick fires while paused", "toggle_pause"),
            ("remove selected  (x)", "it stops firing", "remove")):
        yield SystemCommand(f"Schedules: {title}", what,
                            _call(_in_view, app, "schedules", getattr(schedules, f"action_{action}")))


def _call(fn: Any, *args: Any) -> Any:
    return lambda: fn(*args)


def _in_view(app: QueuewatchApp, view: str, action: Any) -> None:
    """Show ``view``, then act on its highlighted row."""
    app.action_view(view)
    action()


def _sort(app: QueuewatchApp, column: str) -> None:
    from queuewatch.tui.widgets.queue_table import QueueTable

    app.action_view("queues")
    app.main.query_one(QueueTable).set_sort(column)

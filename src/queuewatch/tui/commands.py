"""What the help screen and the command palette list: built from the bindings themselves."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from textual.app import SystemCommand
from textual.binding import Binding, BindingType

from queuewatch.tui.format import QUEUE_COLUMNS

if TYPE_CHECKING:
    from queuewatch.tui.app import QueuewatchApp

KEY_NAMES = {"question_mark": "?", "slash": "/", "space": "space", "escape": "Esc"}


def _rows(bindings: Iterable[BindingType]) -> list[tuple[str, str]]:
    out = []
    for b in bindings:
        binding = b if isinstance(b, Binding) else Binding(*b)
        keys = " / ".join(KEY_NAMES.get(k, k) for k in binding.key.split(","))
        out.append((keys, binding.description))
    return out


def help_sections() -> list[tuple[str, list[tuple[str, str]]]]:
    """Every binding, grouped by where it works."""
    from queuewatch.tui.app import QueuewatchApp
    from queuewatch.tui.screens.dialogs import ConfirmScreen
    from queuewatch.tui.widgets.dlq_view import DlqView
    from queuewatch.tui.widgets.views import StuckView, WorkersView

    return [
        ("Everywhere", _rows(QueuewatchApp.BINDINGS)),
        ("Tables", [("j / ↓", "down"), ("k / ↑", "up"), ("Enter", "open the selected queue"),
                    ("click header", "sort by that column")]),
        ("Queue filter", [("Enter", "keep the filter, back to the table"), ("Esc", "clear it")]),
        ("Queue detail", [("Esc", "back to the queues")]),
        ("Workers (2)", _rows(WorkersView.BINDINGS)),
        ("Stuck jobs (3)", _rows(StuckView.BINDINGS)),
        ("DLQ browser (4)", [*_rows(DlqView.BINDINGS),
                             ("/", "filter: text, type:ValueError, reason:failed")]),
        ("Confirmation", _rows(ConfirmScreen.BINDINGS)),
    ]


def palette_commands(app: QueuewatchApp) -> Iterable[SystemCommand]:
    """Views, sorting, vhost and (unless read-only) the DLQ/worker actions, for Ctrl+P."""
    from queuewatch.tui.widgets.dlq_view import DlqView
    from queuewatch.tui.widgets.views import StuckView, WorkersView

    for view, title in (("queues", "Queues"), ("workers", "Workers"), ("stuck", "Stuck jobs"),
                        ("dlq", "DLQ browser"), ("alerts", "Alerts")):
        yield SystemCommand(f"View: {title}", f"show the {title} view", _call(app.action_view, view))
    for key, label, _w, _r in QUEUE_COLUMNS:
        yield SystemCommand(f"Sort queues by {label}", "largest first (again to reverse)",
                            _call(_sort, app, key), discover=False)
    yield SystemCommand("Filter queues", "type part of a name", app.action_filter)
    yield SystemCommand("Switch vhost", "poll another virtual host", app.action_pick_vhost)
    yield SystemCommand("Refresh now", "poll the broker now", app.action_refresh)
    yield SystemCommand("Help", "every key binding", app.action_help)
    dlq = app.main.query_one(DlqView)
    yield SystemCommand("DLQ: pick a DLQ", "choose the DLQ to browse", dlq.action_pick_dlq)
    yield SystemCommand("DLQ: export", "write every dead letter to a JSONL file", dlq.action_export)
    if app.read_only:
        return
    yield SystemCommand("DLQ: replay marked", "dry run, confirm, replay", dlq.action_replay_selected)
    yield SystemCommand("DLQ: replay filtered", "every dead letter matching the filter",
                        dlq.action_replay_filtered)
    yield SystemCommand("DLQ: delete marked", "dry run, confirm, delete", dlq.action_delete_selected)
    yield SystemCommand("Workers: terminate selected hung worker", "local hung workers only",
                        app.main.query_one(WorkersView).action_terminate)
    yield SystemCommand("Stuck jobs: cancel selected job", "the worker parks it in the DLQ",
                        app.main.query_one(StuckView).action_cancel_job)


def _call(fn: Any, *args: Any) -> Any:
    return lambda: fn(*args)


def _sort(app: QueuewatchApp, column: str) -> None:
    from queuewatch.tui.widgets.queue_table import QueueTable

    app.action_view("queues")
    app.main.query_one(QueueTable).set_sort(column)

"""The add/change dialog of the Schedules view: a few one-line fields; bad input (an invalid
cron expression or time zone, an interval <= 0, a payload that is not JSON) is one line in
the dialog and changes nothing. It returns a
:class:`~queuewatch.schedules.changes.ScheduleChange`, which the view then confirms."""

from __future__ import annotations

import json
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from queuewatch.errors import ConfigError
from queuewatch.schedules.changes import ScheduleChange, build_schedule, parse_payload
from queuewatch.schedules.spec import Schedule
from queuewatch.tui.widgets.footer import PinnedFooter

#: (input id, label, placeholder) of each field, in order.
FIELDS = (
    ("name", "Name", "nightly-report"),
    ("queue", "Queue", "reports"),
    ("cron", "Cron", "0 3 * * *   (or leave empty and give Every)"),
    ("every", "Every (s)", "30   (or leave empty and give Cron)"),
    ("timezone", "Time zone", "UTC, Europe/Paris, ..."),
    ("payload", "Payload", 'JSON, e.g. {"kind": "daily"}'),
    ("missed", "Missed", "skip or fire_once"),
)


def _initial(schedule: Schedule | None) -> dict[str, str]:
    if schedule is None:
        return {"timezone": "UTC", "missed": "skip"}
    return {
        "name": schedule.name, "queue": schedule.queue, "cron": schedule.cron or "",
        "every": "" if schedule.every is None else f"{schedule.every:g}",
        "timezone": schedule.timezone,
        "payload": "" if schedule.payload is None else json.dumps(schedule.payload),
        "missed": schedule.missed,
    }


class ScheduleEditScreen(ModalScreen[ScheduleChange | None]):
    """Add a schedule (``current`` None) or change ``current``. Enter or Save checks the
    fields; Esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "save", "Save")]

    def __init__(self, current: Schedule | None = None) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        values = _initial(self.current)
        title = (f"Change schedule {self.current.name}" if self.current is not None
                 else "Add a schedule")
        with Vertical(id="dialog", classes="schedule-edit"):
            yield Label(title, id="dialog-title", markup=False)
            with Grid(id="schedule-fields"):
                for key, label, hint in FIELDS:
                    yield Label(label, markup=False)
                    yield Input(values.get(key, ""), placeholder=hint, id=f"sched-{key}",
                                compact=True, disabled=key == "name" and self.current is not None)
            yield Static("", id="schedule-error", markup=False)
            with Horizontal(id="dialog-buttons"):
                yield Button("Save (Enter)", variant="primary", id="save", compact=True)
                yield Button("Cancel (Esc)", id="cancel", compact=True)
        yield PinnedFooter()

    def on_mount(self) -> None:
        first = "sched-queue" if self.current is not None else "sched-name"
        self.query_one(f"#{first}", Input).focus()

    def value(self, key: str) -> str:
        return self.query_one(f"#sched-{key}", Input).value.strip()

    def build(self) -> ScheduleChange:
        """The change the fields describe; ConfigError (one line) when they are not valid."""
        name = self.current.name if self.current is not None else self.value("name")
        if not name:
            raise ConfigError("a schedule needs a name")
        if not self.value("queue"):
            raise ConfigError("a schedule needs a queue")
        schedule = build_schedule(
            name, self.value("queue"), cron=self.value("cron") or None,
            every=self.value("every") or None, timezone=self.value("timezone") or "UTC",
            payload=parse_payload(self.value("payload")), missed=self.value("missed") or "skip",
            grace=self.current.grace if self.current is not None else None,
            priority=self.current.priority if self.current is not None else None)
        if self.current is None:
            return ScheduleChange("add", name, schedule)
        fields: dict[str, Any] = {k: v for k, v in schedule.definition().items()
                                  if k not in ("name", "paused")
                                  and v != self.current.definition().get(k)}
        if not fields:
            raise ConfigError("nothing changed")
        return ScheduleChange("change", name, fields=fields)

    def action_save(self) -> None:
        try:
            change = self.build()
        except ConfigError as exc:
            self.query_one("#schedule-error", Static).update(f"✗ {exc}")
            return
        self.dismiss(change)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

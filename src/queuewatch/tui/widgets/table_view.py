"""What every view of the console has: a help line, a `/` filter (Esc clears it), a table,
Enter to drill down, and failures of its background actions shown (``ReportsFailures``)."""

from __future__ import annotations

from typing import Protocol

from textual import on
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input

from queuewatch.errors import ReadOnlyError
from queuewatch.tui.failures import ReportsFailures


class Filterable(Protocol):
    filter_text: str

    def set_filter(self, text: str) -> None: ...


class DrillDown(Message):
    """Show ``target`` (a queue, worker, job or DLQ) where it is best seen."""

    def __init__(self, kind: str, target: str) -> None:
        super().__init__()
        self.kind = kind
        self.target = target


class TableView(ReportsFailures, Vertical):
    """A view with a filter box over its table. Subclasses yield the box from ``compose``
    (``self.filter_box()``) and name their table in :meth:`table`."""

    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]
    DESTRUCTIVE: frozenset[str] = frozenset()
    FILTER_HINT = "filter: any text in a row (Enter keeps it, Esc clears it)"

    def __init__(self, *, read_only: bool = False, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.read_only = read_only

    def table(self) -> Widget:
        raise NotImplementedError

    def filter_box(self) -> Input:
        return Input(placeholder=self.FILTER_HINT, classes="view-filter")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "clear_filter":
            return bool(self.query_one(".view-filter", Input).display)
        return None if action in self.DESTRUCTIVE and self.read_only else True

    def refuse(self, action: str) -> bool:
        if self.read_only:
            self.app.notify(str(ReadOnlyError(action)), severity="warning")
        return self.read_only

    # -- filter --------------------------------------------------------------------------
    def action_filter(self) -> None:
        box = self.query_one(".view-filter", Input)
        box.display = True
        box.focus()
        self.refresh_bindings()

    def action_clear_filter(self) -> None:
        box = self.query_one(".view-filter", Input)
        box.value = ""
        box.display = False
        self._apply_filter("")
        self.table().focus()
        self.refresh_bindings()

    @on(Input.Changed, ".view-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._apply_filter(event.value)

    @on(Input.Submitted, ".view-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not event.value.strip():
            self.action_clear_filter()
        else:
            self.table().focus()

    def _apply_filter(self, text: str) -> None:
        table = self.table()
        assert hasattr(table, "set_filter")
        table.set_filter(text.strip())
        self.filter_changed()

    def filter_changed(self) -> None:
        """Hook: the filter changed (update the help line)."""

"""The DLQ browser's "by cause" table: one row per cause (error type + message shape) with
its count and when it was first and last seen (see :mod:`queuewatch.tui.grouping`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.widgets import DataTable

from queuewatch.dlq.filters import DeadLetterFilter
from queuewatch.dlq.model import DeadLetter
from queuewatch.monitor.model import fmt_duration
from queuewatch.tui.grouping import Cause, group_by_cause
from queuewatch.tui.layout import Column
from queuewatch.tui.widgets.keyed_table import KeyedTable

CAUSE_COLUMNS = (
    Column("count", "Count", 6, right=True),
    Column("cause", "Cause (error type: message shape)", 40, flex=True, min_width=20),
    Column("last", "Last seen", 9, right=True), Column("first", "First seen", 10, 1, right=True),
    Column("reason", "Reason", 10, 2),
)


def _ago(ms: int | None, now: float) -> str:
    return "-" if ms is None else fmt_duration(max(now - ms / 1000.0, 0.0)) + " ago"


class CauseTable(KeyedTable):
    """Causes of the dead letters read, most frequent first."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(CAUSE_COLUMNS, **kw)
        self.causes: dict[str, Cause] = {}

    def show(self, letters: Iterable[DeadLetter], now: float) -> None:
        causes = group_by_cause(letters)
        self.causes = {c.key: c for c in causes}
        self.set_rows({
            c.key: (Text(str(c.count), style="bold"), Text(c.label, style="red"),
                    _ago(c.last_ms, now), _ago(c.first_ms, now), ", ".join(sorted(c.reasons)))
            for c in causes
        })

    @property
    def selected(self) -> Cause | None:
        return self.causes.get(self.selected_key or "")


class CauseMode:
    """``b`` in the DLQ browser: the dead letters read, grouped by cause (mixed into the view)."""

    if TYPE_CHECKING:  # provided by the view
        filter: DeadLetterFilter

        def has_class(self, *class_names: str) -> bool: ...
        def toggle_class(self, *names: str) -> Any: ...
        def query_one(self, selector: Any, expect_type: Any = None) -> Any: ...
        def reload(self) -> None: ...
        def _help(self, extra: str = "") -> None: ...

    @property
    def by_cause(self) -> bool:
        return self.has_class("by-cause")

    def action_by_cause(self) -> None:
        """``b``: the causes; ``b`` again: the list."""
        self.toggle_class("by-cause")
        self.query_one("#dlq-causes" if self.by_cause else "#dlq-table").focus()
        self._help()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a cause: the list of its dead letters."""
        if event.data_table.id != "dlq-causes":
            return
        event.stop()
        cause = self.query_one(CauseTable).selected
        if cause is None or not cause.job_ids:
            return
        self.filter = DeadLetterFilter.for_jobs(cause.job_ids)
        self.action_by_cause()
        self.reload()

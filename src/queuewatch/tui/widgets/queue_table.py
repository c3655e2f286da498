"""The queue table: one row per queue, updated in place.

Each refresh compares the new cells with the ones shown and calls ``update_cell`` only for
cells that changed; rows are added/removed only for queues that appeared/disappeared. The
table is rebuilt only when the filter changes (a user action, not a refresh).
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist

from queuewatch.monitor.model import QueueStats, Snapshot
from queuewatch.tui.format import (
    QUEUE_COLUMN_KEYS,
    QUEUE_COLUMNS,
    queue_cell,
    queue_row,
    queue_sort_value,
    severity_by_target,
)

Row = tuple[str, ...]
"""A row's plain cell values plus the severity that colours it."""


class QueueTable(DataTable[Text | str]):
    """Queues of the current snapshot, filtered by name and sorted by any column."""

    BINDINGS = [
        ("j", "cursor_down", "Down"),
        ("k", "cursor_up", "Up"),
    ]

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self.filter_text = ""
        self.sort_column = "name"
        self.sort_reverse = False
        self._shown: dict[str, Row] = {}
        self._stats: dict[str, QueueStats] = {}
        self._name_width = 24
        self._severity: dict[str, str] = {}

    def on_mount(self) -> None:
        self._add_columns()

    def _add_columns(self) -> None:
        for key, label, width, right in QUEUE_COLUMNS:
            w = self._name_width if key == "name" else width
            shown = Text(label, justify="right") if right else label
            self.add_column(shown, key=key, width=w)

    # -- data ----------------------------------------------------------------------------
    def matches(self, name: str) -> bool:
        return not self.filter_text or self.filter_text.lower() in name.lower()

    def apply(self, snapshot: Snapshot) -> None:
        """Show ``snapshot``: update changed cells, add new queues, remove gone ones."""
        severity = self._severity = severity_by_target(snapshot.alerts)
        self._stats = {q.name: q for q in snapshot.queues}
        wanted = {q.name: q for q in snapshot.queues if self.matches(q.name)}
        if not self._shown and wanted:
            longest = max(len(n) for n in wanted)
            if longest > self._name_width:
                self._name_width = min(longest, 48)
                self.columns[self.columns_key("name")].width = self._name_width
        gone = [name for name in self._shown if name not in wanted]
        if len(gone) > 200:
            self._rebuild(wanted, severity)
        else:
            for name in gone:
                self.remove_row(name)
                del self._shown[name]
            self._update_rows(wanted, severity)
        self._sort()

    def _update_rows(self, wanted: dict[str, QueueStats], severity: dict[str, str]) -> None:
        keys = QUEUE_COLUMN_KEYS
        shown = self._shown
        for name, q in wanted.items():
            sev = severity.get(name)
            row = (*queue_row(q), sev or "")
            old = shown.get(name)
            if old is None:
                self.add_row(*(queue_cell(i, v, sev) for i, v in enumerate(row[:-1])), key=name)
            elif old != row:
                for i in range(len(keys)):
                    if old[i] != row[i] or (i == 0 and old[-1] != row[-1]):
                        self.update_cell(name, keys[i], queue_cell(i, row[i], sev))
            else:
                continue
            shown[name] = row

    def _rebuild(self, wanted: dict[str, QueueStats], severity: dict[str, str]) -> None:
        selected = self.selected_name
        self.clear()
        self._shown = {}
        self._update_rows(wanted, severity)
        self._sort()
        if selected is not None and selected in self._shown:
            self.move_cursor(row=self.get_row_index(selected))

    def columns_key(self, key: str):  # type: ignore[no-untyped-def]
        for column_key in self.columns:
            if column_key.value == key:
                return column_key
        raise KeyError(key)

    # -- filter and sort ---------------------------------------------------------------
    def set_filter(self, text: str) -> None:
        if text == self.filter_text:
            return
        self.filter_text = text
        wanted = {n: q for n, q in self._stats.items() if self.matches(n)}
        self._rebuild(wanted, self._severity)

    def set_sort(self, column: str, reverse: bool | None = None) -> None:
        if reverse is None:
            reverse = not self.sort_reverse if column == self.sort_column else column != "name"
        self.sort_column, self.sort_reverse = column, reverse
        self._sort()

    def cycle_sort(self) -> str:
        """Sort by the next column (``s``); returns its label."""
        i = QUEUE_COLUMN_KEYS.index(self.sort_column)
        nxt = QUEUE_COLUMN_KEYS[(i + 1) % len(QUEUE_COLUMN_KEYS)]
        self.set_sort(nxt, reverse=nxt != "name")
        return nxt

    def _label_sort_column(self) -> None:
        arrow = " ▼" if self.sort_reverse else " ▲"
        for key, label, _width, right in QUEUE_COLUMNS:
            text = label + arrow if key == self.sort_column else label
            col = self.columns.get(self.columns_key(key))
            if col is not None and col.label.plain != text:
                col.label = Text(text, justify="right" if right else "left")
        self.refresh()

    def _sort(self) -> None:
        stats, column = self._stats, self.sort_column
        self._label_sort_column()

        def key(name_cell: Text | str) -> tuple[object, str]:
            name = name_cell.plain if isinstance(name_cell, Text) else name_cell
            q = stats.get(name)
            return (queue_sort_value(q, column) if q else 0, name)

        self.sort("name", key=key, reverse=self.sort_reverse)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.set_sort(str(event.column_key.value))

    # -- selection -------------------------------------------------------------------------
    @property
    def selected_name(self) -> str | None:
        if not self.row_count:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except CellDoesNotExist:
            return None
        return None if row_key.value is None else str(row_key.value)

    def stats(self, name: str) -> QueueStats | None:
        return self._stats.get(name)

    @property
    def shown_names(self) -> list[str]:
        """Names in display order (tests use it)."""
        return [str(row.key.value) for row in self.ordered_rows]

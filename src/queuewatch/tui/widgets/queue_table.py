"""The queue table: one row per queue, updated in place.

Each refresh compares every row's plain cell values with the ones shown and writes only the
cells that changed; rows are added/removed only for queues that appeared/disappeared; the
table is rebuilt only when the filter changes (a user action, not a refresh). Changed cells
are written in one batch followed by a single repaint (``DataTable.update_cell`` repaints
per call, which costs seconds at 5,000 queues x 12 columns). Rows are re-sorted only when
the sort column's values or the set of rows changed.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, ColumnKey, RowKey

from queuewatch.monitor.model import QueueStats, Snapshot
from queuewatch.tui.format import (
    QUEUE_COLUMN_KEYS,
    QUEUE_COLUMNS,
    queue_cell,
    queue_row,
    severity_by_target,
)

Row = tuple[str, ...]
"""A row's plain cell values plus the severity that colours it."""

INTERNAL_PREFIXES = ("queuewatch.", "amq.gen-")


def is_internal(name: str) -> bool:
    """queuewatch's delay levels and control queues, and server-named exclusive queues."""
    return name.startswith(INTERNAL_PREFIXES)


_SORT_INDEX = {key: i for i, key in enumerate(QUEUE_COLUMN_KEYS)}


def _sort_getter(column: str) -> Callable[[QueueStats], object]:
    """What ``column`` sorts by: numbers as numbers, unknown (None) lowest."""
    def num(value: float | None) -> float:
        return -1.0 if value is None else float(value)

    getters: dict[str, Callable[[QueueStats], object]] = {
        "name": lambda q: q.name, "type": lambda q: q.type, "state": lambda q: q.state,
        "ready": lambda q: q.ready, "unacked": lambda q: q.unacked,
        "consumers": lambda q: q.consumers, "in": lambda q: q.publish_rate,
        "out": lambda q: q.deliver_rate, "oldest": lambda q: num(q.oldest_age),
        "eta": lambda q: num(q.drain_eta), "fill": lambda q: num(q.fill),
        "dlq": lambda q: num(q.dlq_depth),
    }
    return getters[column]


class QueueTable(DataTable[str]):
    """Queues of the current snapshot, filtered by name and sorted by any column."""

    BINDINGS = [
        ("j", "cursor_down", "Down"),
        ("k", "cursor_up", "Up"),
    ]

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self.filter_text = ""
        self.show_internal = False
        """queuewatch's own delay/control queues and server-named (amq.gen-) queues."""
        self.sort_column = "name"
        self.sort_reverse = False
        self._shown: dict[str, Row] = {}
        self._name_cell: dict[str, str] = {}
        """Name cell markup -> queue name (the sort key function only sees cells)."""
        self._stats: dict[str, QueueStats] = {}
        self._severity: dict[str, str] = {}
        self._name_width = 24
        self._column_keys: list[ColumnKey] = []
        self._sort_dirty = True

    def on_mount(self) -> None:
        for key, label, width, right in QUEUE_COLUMNS:
            w = self._name_width if key == "name" else width
            shown = Text(label, justify="right") if right else label
            self._column_keys.append(self.add_column(shown, key=key, width=w))
        self._label_sort_column()

    # -- data ----------------------------------------------------------------------------
    def matches(self, name: str) -> bool:
        if not self.show_internal and is_internal(name):
            return False
        return not self.filter_text or self.filter_text.lower() in name.lower()

    def set_show_internal(self, show: bool) -> None:
        self.show_internal = show
        self._rebuild({n: q for n, q in self._stats.items() if self.matches(n)})

    def summary(self) -> str:
        """One line about what the table shows (counts, hidden queues, sort, filter)."""
        total = len(self._stats)
        internal = sum(1 for n in self._stats if is_internal(n))
        parts = [f"{len(self._shown)} of {total} queues"]
        if internal:
            parts.append(f"{internal} internal {'shown' if self.show_internal else 'hidden'} (i)")
        label = next(c[1] for c in QUEUE_COLUMNS if c[0] == self.sort_column)
        parts.append(f"sorted by {label} {'▼' if self.sort_reverse else '▲'} (s, S)")
        parts.append(f"filter '{self.filter_text}' (/)" if self.filter_text else "/ filters")
        parts.append("Enter: detail")
        return " " + "  ·  ".join(parts)

    def apply(self, snapshot: Snapshot) -> None:
        """Show ``snapshot``: update changed cells, add new queues, remove gone ones."""
        severity = self._severity = severity_by_target(snapshot.alerts)
        self._stats = {q.name: q for q in snapshot.queues}
        wanted = {q.name: q for q in snapshot.queues if self.matches(q.name)}
        if not self._shown and wanted:
            longest = max(len(n) for n in wanted)
            if longest > self._name_width:
                self._name_width = min(longest, 48)
                self.columns[self._column_keys[0]].width = self._name_width
        gone = [name for name in self._shown if name not in wanted]
        if len(gone) > 200:
            self._rebuild(wanted)
            return
        for name in gone:
            self.remove_row(name)
            self._forget(name)
        self._update_rows(wanted, severity)
        self._sort()

    def _forget(self, name: str) -> None:
        row = self._shown.pop(name, None)
        if row is not None:
            self._name_cell.pop(queue_cell(0, name, row[-1] or None), None)
        self._sort_dirty = True

    def _update_rows(self, wanted: dict[str, QueueStats], severity: dict[str, str]) -> None:
        shown, cols = self._shown, self._column_keys
        sort_i = _SORT_INDEX[self.sort_column]
        changed: list[tuple[str, int, str]] = []
        ncols = len(cols)
        for name, q in wanted.items():
            sev = severity.get(name, "")
            row = queue_row(q, sev)
            old = shown.get(name)
            if old == row:
                continue
            shown[name] = row
            if old is None:
                cells = [queue_cell(i, v, sev or None) for i, v in enumerate(row[:-1])]
                self._name_cell[cells[0]] = name
                self.add_row(*cells, key=name)
                self._sort_dirty = True
                continue
            for i in range(ncols):
                if old[i] != row[i] or (i == 0 and old[-1] != sev):
                    cell = queue_cell(i, row[i], sev or None)
                    if i == 0:
                        self._name_cell[cell] = name
                    changed.append((name, i, cell))
                    if i == sort_i:
                        self._sort_dirty = True
        self._write_cells(changed)

    def _write_cells(self, changed: list[tuple[str, int, str]]) -> None:
        """Write many cells, then repaint once."""
        if not changed:
            return
        data = getattr(self, "_data", None)
        if not isinstance(data, dict) or not hasattr(self, "_update_count"):
            for name, i, cell in changed:  # a Textual without the internals we batch on
                self.update_cell(name, self._column_keys[i], cell)
            return
        cols = self._column_keys
        for name, i, cell in changed:
            data[RowKey(name)][cols[i]] = cell
        self._update_count += 1
        self.refresh()

    def _rebuild(self, wanted: dict[str, QueueStats]) -> None:
        selected = self.selected_name
        self.clear()
        self._shown = {}
        self._name_cell = {}
        self._sort_dirty = True
        self._update_rows(wanted, self._severity)
        self._sort()
        if selected is not None and selected in self._shown:
            self.move_cursor(row=self.get_row_index(selected))

    # -- filter and sort ---------------------------------------------------------------
    def set_filter(self, text: str) -> None:
        if text == self.filter_text:
            return
        self.filter_text = text
        self._rebuild({n: q for n, q in self._stats.items() if self.matches(n)})

    def set_sort(self, column: str, reverse: bool | None = None) -> None:
        if reverse is None:
            reverse = not self.sort_reverse if column == self.sort_column else column != "name"
        self.sort_column, self.sort_reverse = column, reverse
        self._sort_dirty = True
        self._sort()

    def cycle_sort(self) -> str:
        """Sort by the next column (``s``); returns its key."""
        i = QUEUE_COLUMN_KEYS.index(self.sort_column)
        nxt = QUEUE_COLUMN_KEYS[(i + 1) % len(QUEUE_COLUMN_KEYS)]
        self.set_sort(nxt, reverse=nxt != "name")
        return nxt

    def _label_sort_column(self) -> None:
        arrow = " ▼" if self.sort_reverse else " ▲"
        for (key, label, _width, right), col_key in zip(QUEUE_COLUMNS, self._column_keys, strict=False):
            text = label + arrow if key == self.sort_column else label
            col = self.columns.get(col_key)
            if col is not None and col.label.plain != text:
                col.label = Text(text, justify="right" if right else "left")
        self.refresh()

    def _sort(self) -> None:
        if not self._sort_dirty:
            return
        self._sort_dirty = False
        self._label_sort_column()
        get = _sort_getter(self.sort_column)
        stats, names = self._stats, self._name_cell
        values = {name: get(stats[name]) for name in self._shown if name in stats}

        def key(name_cell: str) -> tuple[object, str]:
            name = names.get(name_cell, name_cell)
            return (values.get(name, 0), name)

        self.sort(self._column_keys[0], key=key, reverse=self.sort_reverse)

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

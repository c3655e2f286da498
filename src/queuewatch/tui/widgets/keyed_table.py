"""A DataTable fed with ``{key: cells}`` in the order to show: it adds, updates and removes
only what changed, keeps the order it is given, filters rows by text, and shows the columns
that fit its width (see :mod:`queuewatch.tui.layout`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist

from queuewatch.tui.layout import Column, fit_columns

Cell = Text | str

#: Keys every table of the console understands (vi habits, as in k9s and htop).
TABLE_BINDINGS: list[BindingType] = [
    Binding("j", "cursor_down", "Down", show=False),
    Binding("k", "cursor_up", "Up", show=False),
    Binding("g", "first_row", "First row", show=False),
    Binding("G", "last_row", "Last row", show=False),
]


#: Under the cursor a cell keeps its own colours (a red HUNG or critical cell stays red):
#: Textual's cursor style wins over a cell's foreground by default; cells without a colour of
#: their own take the cursor's.
CURSOR_KEEPS_COLOURS: dict[str, Any] = {"cursor_foreground_priority": "renderable",
                                        "cursor_background_priority": "renderable"}


class TableKeys:
    """``g``/``G``: first/last row (mixed into the console's DataTables)."""

    def action_first_row(self: Any) -> None:
        if self.row_count:
            self.move_cursor(row=0)

    def action_last_row(self: Any) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1)


class KeyedTable(TableKeys, DataTable[Cell]):
    BINDINGS = TABLE_BINDINGS

    def __init__(self, columns: Sequence[Column], *, wrap: bool = False, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **CURSOR_KEEPS_COLOURS,
                         **kwargs)  # type: ignore[arg-type]
        self._spec = tuple(columns)
        self._wrap = wrap
        """Rows as tall as their wrapped cells (the alerts' reasons)."""
        self._all: dict[str, tuple[Cell, ...]] = {}
        self._shown: dict[str, tuple[Cell, ...]] = {}
        self._visible: list[int] = []
        self.filter_text = ""

    def on_mount(self) -> None:
        self._layout(self.size.width or 80)

    def on_resize(self, event: events.Resize) -> None:
        self._layout(event.size.width)

    def on_show(self) -> None:
        """A table in a hidden tab was laid out blind: fit it to its width once it shows."""
        self.call_after_refresh(self._relayout)

    def _relayout(self) -> None:
        if self.size.width:
            self._layout(self.size.width)

    @property
    def visible_columns(self) -> list[str]:
        return [self._spec[i].key for i in self._visible]

    def _layout(self, width: int) -> None:
        """Show the columns that fit ``width``; rebuild only when the set or a width changed."""
        fit = fit_columns(self._spec, max(width - 2, 20))
        visible = [i for i, c in enumerate(self._spec) if c.key in fit]
        current = {str(k.value): c.width for k, c in self.columns.items()}
        if visible == self._visible and current == fit:
            return
        self._visible = visible
        self.clear(columns=True)
        for i in visible:
            c = self._spec[i]
            label = Text(c.label, justify="right") if c.right else c.label
            self.add_column(label, key=c.key, width=fit[c.key])
        self._shown = {}
        self._show(self._all)

    # -- rows ----------------------------------------------------------------------------
    def set_rows(self, rows: Mapping[str, Sequence[Cell]]) -> None:
        """Show ``rows`` in the order given (by key); only changed cells are redrawn."""
        self._all = {k: tuple(v) for k, v in rows.items()}
        if self._visible:
            self._show(self._all)

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        self._show(self._all)

    def _matches(self, cells: tuple[Cell, ...]) -> bool:
        if not self.filter_text:
            return True
        needle = self.filter_text.lower()
        return any(needle in (c.plain if isinstance(c, Text) else c).lower() for c in cells)

    def _cells(self, row: tuple[Cell, ...]) -> tuple[Cell, ...]:
        # (a str cell becomes plain Text: DataTable reads a str as markup, and a queue name
        # or an error message with a "[" in it must show as it is, not fail to render)
        return tuple(_right(row[i]) if self._spec[i].right else _plain(row[i])
                     for i in self._visible)

    def _show(self, rows: Mapping[str, tuple[Cell, ...]]) -> None:
        wanted = {k: self._cells(v) for k, v in rows.items() if self._matches(v)}
        if list(wanted) != [k for k in self._shown if k in wanted]:
            self._rebuild(wanted)  # new keys, or a new order: the order given wins
            return
        for gone in [k for k in self._shown if k not in wanted]:
            self.remove_row(gone)
            del self._shown[gone]
        keys = [self._spec[i].key for i in self._visible]
        for key, new in wanted.items():
            old = self._shown[key]
            if old != new:
                for i, (a, b) in enumerate(zip(old, new, strict=True)):
                    if a != b:
                        self.update_cell(key, keys[i], b, update_width=False)
                self._shown[key] = new

    def _rebuild(self, wanted: dict[str, tuple[Cell, ...]]) -> None:
        selected = self.selected_key
        row = self.cursor_row
        self.clear()
        for key, cells in wanted.items():
            self.add_row(*cells, key=key, height=None if self._wrap else 1)
        self._shown = dict(wanted)
        if selected in wanted:
            self.move_cursor(row=list(wanted).index(selected), animate=False)
        elif wanted:
            self.move_cursor(row=min(row, len(wanted) - 1), animate=False)

    @property
    def selected_key(self) -> str | None:
        return selected_row_key(self)

    @property
    def keys(self) -> list[str]:
        return [str(r.key.value) for r in self.ordered_rows]


def _plain(cell: Cell) -> Cell:
    return Text(cell) if isinstance(cell, str) else cell


def _right(cell: Cell) -> Cell:
    """A cell of a right-aligned column, aligned right."""
    if isinstance(cell, str):
        return Text(cell, justify="right")
    if cell.justify is None:
        cell = cell.copy()
        cell.justify = "right"
    return cell


def selected_row_key(table: DataTable[Any]) -> str | None:
    """The key of the row under ``table``'s cursor, or None for an empty table."""
    if not table.row_count:
        return None
    try:
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
    except CellDoesNotExist:
        return None
    return None if row_key.value is None else str(row_key.value)

"""A DataTable fed with ``{key: cells}``: it adds, updates and removes only what changed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist

Cell = Text | str


class KeyedTable(DataTable[Cell]):
    BINDINGS = [("j", "cursor_down", "Down"), ("k", "cursor_up", "Up")]

    def __init__(self, columns: Sequence[tuple[str, str, int]], **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self._column_spec = tuple(columns)
        self._shown: dict[str, tuple[Cell, ...]] = {}

    def on_mount(self) -> None:
        for key, label, width in self._column_spec:
            self.add_column(label, key=key, width=width or None)

    def set_rows(self, rows: Mapping[str, Sequence[Cell]]) -> None:
        keys = [c[0] for c in self._column_spec]
        for gone in [k for k in self._shown if k not in rows]:
            self.remove_row(gone)
            del self._shown[gone]
        for key, cells in rows.items():
            new = tuple(cells)
            old = self._shown.get(key)
            if old is None:
                self.add_row(*new, key=key)
            elif old != new:
                for i, (a, b) in enumerate(zip(old, new, strict=True)):
                    if a != b:
                        self.update_cell(key, keys[i], b)
            self._shown[key] = new

    @property
    def selected_key(self) -> str | None:
        return selected_row_key(self)

    @property
    def keys(self) -> list[str]:
        return [str(r.key.value) for r in self.ordered_rows]


def selected_row_key(table: DataTable[Any]) -> str | None:
    """The key of the row under ``table``'s cursor, or None for an empty table."""
    if not table.row_count:
        return None
    try:
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
    except CellDoesNotExist:
        return None
    return None if row_key.value is None else str(row_key.value)

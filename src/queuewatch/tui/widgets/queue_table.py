"""The queue table: one row per queue, updated in place.

Rows are keyed by queue name and never rebuilt by a refresh: queues that appeared are
added, queues that vanished are removed, and every other row stays. Each cell is a small
:class:`QueueCell` that renders itself from the table's *current* snapshot, so a refresh
swaps the snapshot and invalidates the table's render caches once; only the rows on screen
are formatted again (about 40 of 5,000). Rows are re-sorted only when the sort column is
not the (unchanging) name or the set of rows changed. The table is rebuilt only when the
filter changes (a user action).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text
from textual import events
from textual.widgets import DataTable
from textual.widgets.data_table import Column, RowKey

from queuewatch.monitor.history import INTERNAL_PREFIXES
from queuewatch.monitor.model import Alert, QueueStats, Snapshot
from queuewatch.tui.format import (
    QUEUE_COLUMN_KEYS,
    QUEUE_COLUMNS,
    out_rate,
    queue_cell,
    severity_by_cell,
    severity_by_target,
)
from queuewatch.tui.layout import fit_columns
from queuewatch.tui.widgets.keyed_table import (
    CURSOR_KEEPS_COLOURS,
    TABLE_BINDINGS,
    TableKeys,
    selected_row_key,
)

OLDEST = QUEUE_COLUMN_KEYS.index("oldest")
#: Rows added in one go when many queues appear at once (the first poll of a big broker, a
#: filter cleared): the rest are added this many per turn of the event loop, so the console
#: answers keys while it fills (50,000 rows at once held it for about 3 s).
ADD_CHUNK = 2_000
#: Seconds between two chunks: the screen is idle then (repainted, keys handled).
CHUNK_PAUSE = 0.01

def is_internal(name: str) -> bool:
    """queuewatch's delay levels and control queues, and server-named exclusive queues."""
    return name.startswith(INTERNAL_PREFIXES)


def _sort_getter(column: str) -> Callable[[QueueStats], object]:
    """What ``column`` sorts by: numbers as numbers, unknown (None) lowest."""
    def num(value: float | None) -> float:
        return -1.0 if value is None else float(value)

    getters: dict[str, Callable[[QueueStats], object]] = {
        "name": lambda q: q.name, "type": lambda q: q.type,
        "state": lambda q: "down" if q.down else q.state,
        "ready": lambda q: num(q.ready), "unacked": lambda q: num(q.unacked),
        "consumers": lambda q: q.consumers, "in": lambda q: q.publish_rate,
        "out": out_rate, "oldest": lambda q: num(q.oldest_age),
        "eta": lambda q: num(q.drain_eta), "fill": lambda q: num(q.fill),
        "dlq": lambda q: num(q.dlq_depth),
    }
    return getters[column]


class QueueCell:
    """One cell; it draws column ``index`` of queue ``name`` from the table's latest snapshot."""

    __slots__ = ("index", "name", "table")

    def __init__(self, table: QueueTable, name: str, index: int) -> None:
        self.table, self.name, self.index = table, name, index

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.table.cell_text(self.name, self.index)

    def __str__(self) -> str:
        return self.table.cell_text(self.name, self.index).plain


class QueueTable(TableKeys, DataTable[QueueCell]):
    """Queues of the current snapshot, filtered by name and sorted by any column; the columns
    that fit the width are shown (:data:`~queuewatch.tui.format.QUEUE_COLUMNS` priorities)."""

    BINDINGS = TABLE_BINDINGS

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **CURSOR_KEEPS_COLOURS,
                         **kwargs)  # type: ignore[arg-type]
        self.filter_text = ""
        self.show_internal = False
        """queuewatch's own delay/control queues and server-named (amq.gen-) queues."""
        self.sort_column = "name"
        self.sort_reverse = False
        self._shown: set[str] = set()
        self._stats: dict[str, QueueStats] = {}
        self._columns: list[Column] | None = None
        self._internal = 0
        """How many of ``_stats`` are internal (counted when the names change)."""
        self._severity: dict[str, str] = {}
        self._problems: dict[tuple[str, int], str] = {}
        """The worst alert per (queue, column): that cell is coloured where the problem is."""
        self._visible: list[int] = []
        self._widths: dict[str, int] = {}
        self._sort_dirty = True
        self._age_offset = 0.0
        self._alerts: tuple[Alert, ...] = ()
        self._to_add: list[str] = []
        """Rows still to add, a chunk per turn of the event loop (see :data:`ADD_CHUNK`)."""
        self._adding = False
        self._reselect: str | None = None

    def on_mount(self) -> None:
        self._layout(self.size.width or 80)

    def on_resize(self, event: events.Resize) -> None:
        self._layout(event.size.width)

    def on_show(self) -> None:
        self.call_after_refresh(lambda: self._layout(self.size.width) if self.size.width else None)

    @property
    def age_offset(self) -> float:
        """Seconds since the snapshot shown was taken, while polls fail: ages keep moving."""
        return self._age_offset

    @age_offset.setter
    def age_offset(self, seconds: float) -> None:
        if seconds != self._age_offset:
            self._age_offset = seconds
            self._redraw()  # every row's age moved

    @property
    def visible_columns(self) -> list[str]:
        return [QUEUE_COLUMNS[i].key for i in self._visible]

    def _layout(self, width: int) -> None:
        """Show the columns that fit (names widen on a wide terminal); rebuilt when that changed."""
        fit = fit_columns(QUEUE_COLUMNS, max(width - 2, 20))
        if fit == self._widths:
            return
        self._widths = fit
        self._visible = [i for i, c in enumerate(QUEUE_COLUMNS) if c.key in fit]
        self.clear(columns=True)
        for i in self._visible:
            c = QUEUE_COLUMNS[i]
            self.add_column(Text(c.label, justify="right") if c.right else c.label, key=c.key,
                            width=fit[c.key])
        self._columns = None
        self._label_sort_column()
        self._rebuild([n for n in self._stats if self.matches(n)])

    @property
    def ordered_columns(self) -> list[Column]:
        """DataTable builds this list again on every call: several times for each row added
        and for each line drawn (a third of the first load of 50,000 queues). The columns
        change only in :meth:`_layout`, so the list is kept until then."""
        cached = getattr(self, "_columns", None)  # DataTable's __init__ may ask first
        if cached is None or len(cached) != len(self.columns):
            cached = self._columns = list(DataTable.ordered_columns.fget(self))  # type: ignore[attr-defined]
        return cached

    # -- what a cell shows -------------------------------------------------------------
    def cell_text(self, name: str, index: int) -> Text:
        q = self._stats.get(name)
        if q is None:
            return Text("")
        if index == OLDEST and self.age_offset and q.oldest_age is not None:
            q = replace(q, oldest_age=q.oldest_age + self.age_offset)
        return queue_cell(index, q, self._severity.get(name),
                          self._problems.get((name, index)) if self._problems else None)

    # -- data ----------------------------------------------------------------------------
    def matches(self, name: str) -> bool:
        if not self.show_internal and is_internal(name):
            return False
        return not self.filter_text or self.filter_text.lower() in name.lower()

    def apply(self, snapshot: Snapshot) -> None:
        """Show ``snapshot``: add new queues, remove gone ones, redraw what is on screen."""
        self._severity = severity_by_target(snapshot.alerts)
        self._problems = severity_by_cell(snapshot.alerts)
        before, self._stats = self._stats, {q.name: q for q in snapshot.queues}
        alerts_before, self._alerts = self._alerts, snapshot.alerts
        if self._stats.keys() != before.keys():  # queues came or went
            self._internal = sum(1 for n in self._stats if is_internal(n))
            self._update_rows()
        self._sort()
        # Rows on screen whose queue and alerts did not change keep what they drew (rows
        # added, removed or sorted make DataTable's own cache keys stale anyway)
        self._redraw(self._unchanged_on_screen(before) if snapshot.alerts == alerts_before
                     else frozenset())

    def _unchanged_on_screen(self, before: dict[str, QueueStats]) -> frozenset[str]:
        top, rows = self.scroll_offset.y, self.ordered_rows
        stats = self._stats
        names = (str(row.key.value) for row in rows[top:top + self.size.height])
        return frozenset(n for n in names if n in before and before[n] == stats.get(n))

    def _update_rows(self) -> None:
        """Rows for the queues that appeared, none for those gone (the same names: nothing
        to do, as the filter did not change: a filter change rebuilds at once)."""
        wanted = [name for name in self._stats if self.matches(name)]
        gone = self._shown.difference(wanted)
        if len(gone) > 200:
            self._rebuild(wanted)
            return
        for name in gone:
            self.remove_row(name)
            self._shown.discard(name)
        self._add_soon([name for name in wanted if name not in self._shown])
        if gone:
            self._sort_dirty = True

    @property
    def rows_to_add(self) -> int:
        """Rows not added yet (a big first load goes on over several turns of the loop)."""
        return len(self._to_add)

    def _add_soon(self, names: list[str]) -> None:
        """Add the first :data:`ADD_CHUNK` of ``names`` now, the rest a chunk per turn."""
        for name in names[:ADD_CHUNK]:
            self._add(name)
        self._to_add = names[ADD_CHUNK:]
        if self._to_add and not self._adding:
            self._adding = True
            self._next_chunk()

    def _next_chunk(self) -> None:
        """The next chunk a moment later, not at once: a callback posted straight to this
        widget's queue would keep it busy, and the screen is repainted and keys move the
        focus only once every queue is idle."""
        self.set_timer(CHUNK_PAUSE, self._add_chunk)

    def _add_chunk(self) -> None:
        batch, self._to_add = self._to_add[:ADD_CHUNK], self._to_add[ADD_CHUNK:]
        for name in batch:
            if name not in self._shown and name in self._stats and self.matches(name):
                self._add(name)
        if self._to_add:
            self._next_chunk()
            return
        self._adding = False
        self._sort()
        if self._reselect is not None and self._reselect in self._shown:
            self.move_cursor(row=self.get_row_index(self._reselect))
        self._reselect = None
        self._redraw()

    def _add(self, name: str) -> None:
        self.add_row(*(QueueCell(self, name, i) for i in self._visible), key=name)
        self._shown.add(name)
        self._sort_dirty = True

    def _redraw(self, keep: frozenset[str] = frozenset()) -> None:
        """The snapshot changed under the cells: drop the table's renders of rows not in
        ``keep`` (rows whose queue did not change), repaint.

        Only the caches of rendered rows, cells and lines: bumping DataTable's
        ``_update_count`` would also drop its row order and line offsets, rebuilt in O(rows)
        per refresh (about 60% of a refresh at 50,000 queues)."""
        for name in ("_row_render_cache", "_cell_render_cache", "_line_cache"):
            cache = getattr(self, name, None)
            if cache is None:
                continue
            if not keep:
                cache.clear()
                continue
            by_line = name == "_line_cache"  # keyed by line number, not by row
            for key in list(cache.keys()):
                row = self._row_at_line(key[0]) if by_line else key[0]
                if row is None or row.value not in keep:  # the header too: drawn again
                    cache.discard(key)
        self.refresh()

    def _row_at_line(self, y: int) -> RowKey | None:
        try:
            row_key: RowKey = self._get_offsets(y)[0]
        except LookupError:
            return None
        return row_key

    def _rebuild(self, wanted: list[str]) -> None:
        selected = self._reselect or self.selected_name
        self.clear()
        self._shown = set()
        self._add_soon(wanted)
        self._sort()
        if selected is not None and selected in self._shown:
            self.move_cursor(row=self.get_row_index(selected))
            self._reselect = None
        else:
            self._reselect = selected  # (still to add: selected once it is)

    # -- filter and sort ---------------------------------------------------------------
    def set_filter(self, text: str) -> None:
        if text == self.filter_text:
            return
        self.filter_text = text
        self._rebuild([n for n in self._stats if self.matches(n)])

    def set_show_internal(self, show: bool) -> None:
        self.show_internal = show
        self._rebuild([n for n in self._stats if self.matches(n)])

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
        for c in QUEUE_COLUMNS:
            text = c.label + arrow if c.key == self.sort_column else c.label
            col = self.columns.get(c.key)  # type: ignore[call-overload]
            if col is not None and col.label.plain != text:
                col.label = Text(text, justify="right" if c.right else "left")
        self.refresh()

    def _sort(self) -> None:
        # Names never change: sorted by name, only new or removed rows need a sort.
        if not self._sort_dirty and self.sort_column == "name":
            return
        self._sort_dirty = False
        self._label_sort_column()
        get, stats = _sort_getter(self.sort_column), self._stats
        values = {name: get(stats[name]) for name in self._shown if name in stats}

        def key(cell: QueueCell) -> tuple[object, str]:
            return (values.get(cell.name, 0), cell.name)

        self.sort("name", key=key, reverse=self.sort_reverse)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.set_sort(str(event.column_key.value))

    # -- what is shown -------------------------------------------------------------------
    @property
    def selected_name(self) -> str | None:
        return selected_row_key(self)

    def stats(self, name: str) -> QueueStats | None:
        return self._stats.get(name)

    @property
    def shown_names(self) -> list[str]:
        """Names in display order (tests use it)."""
        return [str(row.key.value) for row in self.ordered_rows]

    def summary(self) -> str:
        """One line about what the table shows (counts, hidden queues, sort, filter)."""
        total, internal = len(self._stats), self._internal
        parts = [f"{len(self._shown)} of {total} queues"
                 + (f" (adding {len(self._to_add):,} more…)" if self._to_add else "")]
        if internal:
            parts.append(f"{internal} internal {'shown' if self.show_internal else 'hidden'} (i)")
        label = next(c.label for c in QUEUE_COLUMNS if c.key == self.sort_column)
        parts.append(f"sorted by {label} {'▼' if self.sort_reverse else '▲'} (s, S)")
        parts.append(f"filter '{self.filter_text}' (/)" if self.filter_text else "/ filters")
        parts.append("Enter: detail")
        return " " + "  ·  ".join(parts)

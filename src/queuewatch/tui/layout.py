"""Which table columns fit, and how wide: columns hide by priority on a narrow terminal and
flexible ones (names, ids, errors, reasons) take what is left on a wide one.

Pure functions (no widgets): :func:`fit_columns` is what every table of the console uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: What a column costs beyond its width: DataTable's cell padding (1 each side).
PADDING = 2


@dataclass(frozen=True)
class Column:
    """One table column."""

    key: str
    label: str
    width: int
    """Its width; for a flexible column, the width it wants when there is room."""
    priority: int = 0
    """0: never hidden; otherwise the highest number is hidden first when space is short."""
    flex: bool = False
    """Takes spare room on a wide terminal, gives some up (down to ``min_width``) first."""
    min_width: int = 0
    max_width: int = 0
    """A flexible column grows up to this (0: no bound)."""
    right: bool = False
    """Right-aligned (numbers)."""


def fit_columns(columns: Sequence[Column], available: int) -> dict[str, int]:
    """The columns shown in ``available`` cells, with their widths (keys in table order).

    First flexible columns shrink to their minimum, then the least important columns go,
    highest ``priority`` first (the rightmost of equals first); spare room is shared among
    the flexible columns."""
    shown = list(columns)
    widths = {c.key: c.width for c in shown}

    def total() -> int:
        return sum(widths[c.key] + PADDING for c in shown)

    over = total() - available
    while over > 0:  # the widest flexible column gives up a cell, down to its minimum
        wide = [c for c in shown if c.flex and widths[c.key] > c.min_width]
        if not wide:
            break
        widest = max(wide, key=lambda c: widths[c.key] - c.min_width)
        widths[widest.key] -= 1
        over -= 1
    while total() > available:
        droppable = [c for c in shown if c.priority > 0]
        if not droppable:
            break
        worst = max(droppable, key=lambda c: (c.priority, shown.index(c)))
        shown.remove(worst)
    spare = available - total()
    flex = [c for c in shown if c.flex]
    while spare > 0 and flex:
        share = max(spare // len(flex), 1)
        grown = False
        for c in flex:
            room = (c.max_width - widths[c.key]) if c.max_width else share
            add = min(share, room, spare)
            if add > 0:
                widths[c.key] += add
                spare -= add
                grown = True
        if not grown:
            break
    if spare > 0 and shown:  # flexible columns at their maximum: every column gets a share
        share, rest = divmod(spare, len(shown))
        for i, c in enumerate(shown):
            widths[c.key] += share + (1 if i < rest else 0)
    return {c.key: widths[c.key] for c in shown}

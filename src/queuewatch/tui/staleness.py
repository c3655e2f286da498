"""How the console marks data that is no longer current.

Two cases: polls of the management API fail, or one hangs past its time (everything on
screen is as of the last good poll: every view is dimmed and says how old), and the
heartbeat feed is down while polls work (the worker views are dimmed and say that worker
states are unknown). Both are refreshed every second, since the age grows.
"""

from __future__ import annotations

from typing import Any

from textual.screen import Screen
from textual.widgets import TabbedContent

from queuewatch.errors import QueuewatchError
from queuewatch.monitor.model import Snapshot
from queuewatch.tui.widgets.status import ErrorLine
from queuewatch.tui.widgets.views import StaleAware


def poll_age(error: QueuewatchError | None, snapshot: Snapshot | None, now: float) -> float | None:
    """How old the data on screen is while polls fail (None while they succeed)."""
    if error is None or snapshot is None:
        return None
    return snapshot.age(now)


def show_staleness(screen: Screen[Any], error: QueuewatchError | None, snapshot: Snapshot | None,
                   now: float, overdue: float | None = None) -> None:
    """Mark (or unmark) every view of ``screen`` as stale, with the age; ``overdue`` is the
    data's age while a poll hangs (no error yet: see ``StatusBar.overdue``)."""
    screen.query_one(ErrorLine).show_error(None if error is None else str(error), snapshot, now)
    age = poll_age(error, snapshot, now)
    if age is None:
        age = overdue
    screen.query_one(TabbedContent).set_class(age is not None, "stale")
    for view in screen.query(StaleAware):
        view.show_staleness(now, age)

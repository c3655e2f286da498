"""A chart with a time axis (see :mod:`queuewatch.tui.chart`), redrawn to its width."""

from __future__ import annotations

from collections.abc import Sequence

from textual import events
from textual.widgets import Static

from queuewatch.tui.chart import chart


class TimeChart(Static):
    """Points (time, value) over a window ending at ``now``; gaps where there is no data."""

    def __init__(self, height: int = 3, style: str = "green", **kw: object) -> None:
        super().__init__("", markup=False, **kw)  # type: ignore[arg-type]
        self.rows = height
        self.chart_style = style
        self.points: Sequence[tuple[float, float]] = ()
        self.now = 0.0
        self.window = 0.0

    def plot(self, points: Sequence[tuple[float, float]], now: float) -> float:
        """Draw ``points``; returns the window shown (seconds)."""
        self.points, self.now = points, now
        self._draw()
        return self.window

    def on_resize(self, event: events.Resize) -> None:
        self._draw()

    def _draw(self) -> None:
        width = self.size.width or 40
        text, self.window = chart(self.points, self.now, width, self.rows, self.chart_style)
        self.update(text)

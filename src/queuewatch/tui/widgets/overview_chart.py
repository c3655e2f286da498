"""The Queues view's overview chart: the vhost's totals over time (ready, in/s, out/s), side by
side on the queue detail's time axis, from the kept history (it survives a restart; the time
the console was closed is a gap). The totals are summed once per poll by the monitor's
history (:data:`queuewatch.monitor.history.TOTALS`), so drawing costs the same at 50,000
queues as at ten."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label

from queuewatch.monitor.history import HistoryPoint
from queuewatch.tui.chart import span_text
from queuewatch.tui.format import count, rate
from queuewatch.tui.widgets.time_chart import TimeChart

#: Terminal rows from which the chart is shown without asking (``c`` toggles it anyway).
MIN_ROWS = 40


def _count(value: float) -> str:
    return count(int(value))


#: (chart id, title, style, field of a totals point, its format). Out/s is acks and auto-ack
#: deliveries, as in the summary band.
SERIES: tuple[tuple[str, str, str, str, Callable[[float], str]], ...] = (
    ("overview-ready", "Ready", "yellow", "ready", _count),
    ("overview-in", "In/s", "cyan", "publish_rate", rate),
    ("overview-out", "Out/s", "green", "ack_rate", rate),
)


class OverviewChart(Horizontal):
    """Three small time charts of the vhost's totals."""

    DEFAULT_CSS = """
    OverviewChart { height: 5; }
    OverviewChart > Vertical { width: 1fr; height: 5; padding: 0 1 0 0; }
    OverviewChart TimeChart { height: 4; }
    """

    def compose(self) -> ComposeResult:
        for wid, title, style, _, _ in SERIES:
            with Vertical():
                yield Label(title, id=f"{wid}-title", markup=False)
                yield TimeChart(style=style, id=wid)

    def show(self, totals: Sequence[HistoryPoint], now: float) -> None:
        for wid, title, _, field, fmt in SERIES:
            data = [(p.taken_at, float(getattr(p, field))) for p in totals]
            window = self.query_one(f"#{wid}", TimeChart).plot(data, now)
            last = fmt(data[-1][1]) if data else "-"
            top = fmt(max(v for _, v in data)) if data else "-"
            self.query_one(f"#{wid}-title", Label).update(
                f"{title} {last} · max {top} · {span_text(window)}")  # fits 80 columns

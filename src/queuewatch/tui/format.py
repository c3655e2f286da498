"""Pure formatting of snapshot values into table cells (no widgets here)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from rich.text import Text

from queuewatch.monitor.model import Alert, QueueStats, fmt_duration
from queuewatch.tui.layout import Column

SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", None: ""}
STATE_STYLE = {
    "running": "green", "idle": "dim green", "flow": "yellow", "down": "bold red",
    "crashed": "bold red", "stopped": "red", "minority": "red", "paused": "bold yellow",
}

#: The queue table's columns, in its order. On a narrow terminal the highest ``priority``
#: goes first: name, state, depth and the oldest message's age stay; rates go before them.
QUEUE_COLUMNS: tuple[Column, ...] = (
    Column("name", "Queue", 24, flex=True, min_width=14, max_width=60),
    Column("type", "Type", 7, 7),
    Column("state", "State", 7),
    Column("ready", "Ready", 7, right=True),
    Column("unacked", "Unacked", 7, 1, right=True),
    Column("consumers", "Cons", 4, 2, right=True),
    Column("in", "In/s", 6, 5, right=True),
    Column("out", "Out/s", 6, 5, right=True),
    Column("oldest", "Oldest", 7, right=True),
    Column("eta", "Drain ETA", 9, 4, right=True),
    Column("fill", "Fill (cap)", 10, 3, right=True),
    Column("dlq", "DLQ", 7, 3, right=True),
)
QUEUE_COLUMN_KEYS = tuple(c.key for c in QUEUE_COLUMNS)


#: The queue table's column that shows what an alert of each kind is about: the cell is
#: coloured by the alert's severity (where the problem is, not only the queue's name).
PROBLEM_COLUMN = {"oldest_age": "oldest", "fill": "fill", "orphaned": "consumers",
                  "stalled": "out", "queue_down": "state", "members_offline": "state",
                  "dlq_growth": "ready"}


def severity_by_cell(alerts: Iterable[Alert]) -> dict[tuple[str, int], str]:
    """The worst severity per (queue, column index) of the queue table (see
    :data:`PROBLEM_COLUMN`)."""
    worst: dict[tuple[str, int], str] = {}
    for a in alerts:
        column = PROBLEM_COLUMN.get(a.kind)
        if column is None:
            continue
        key = (a.target, QUEUE_COLUMN_KEYS.index(column))
        if worst.get(key) != "critical":
            worst[key] = a.severity
    return worst


def severity_by_target(alerts: Iterable[Alert]) -> dict[str, str]:
    """The worst alert severity per target (queue, worker or node name)."""
    worst: dict[str, str] = {}
    for a in alerts:
        if worst.get(a.target) != "critical":
            worst[a.target] = a.severity
    return worst


_DURATIONS: dict[int, str] = {}


def duration(seconds: float | None) -> str:
    """:func:`fmt_duration`, memoised per whole second (it runs for every queue, every poll)."""
    if seconds is None or seconds == math.inf:
        return fmt_duration(seconds)
    key = int(seconds + 0.5) if seconds > 0 else 0
    text = _DURATIONS.get(key)
    if text is None:
        text = fmt_duration(key)
        if len(_DURATIONS) < 100_000:
            _DURATIONS[key] = text
    return text


def count(n: int | None) -> str:
    if n is None:
        return "-"
    if n < 100_000:
        return str(n)
    if n >= 10_000_000:
        return f"{n / 1_000_000:.0f}M"
    if n >= 100_000:
        return f"{n / 1000:.0f}k"
    return str(n)


def rate(r: float) -> str:
    if r == 0:
        return "0"
    if r >= 1000:
        return f"{r / 1000:.1f}k"
    if r >= 10:
        return f"{r:.0f}"
    return f"{r:.1f}"


def cap(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


#: What a cell of a down queue shows where a number would be: unknown, never 0 or "-".
UNKNOWN = "?"


def state_text(q: QueueStats) -> str:
    """The broker's state, or "down" when the monitor judged the queue down (a quorum queue
    without a majority still says "running"); "paused" when an operator paused it."""
    return "down" if q.down else "paused" if q.paused else q.state


def ready_text(q: QueueStats) -> str:
    return "down" if q.ready is None else count(q.ready)


def unacked_text(q: QueueStats) -> str:
    return UNKNOWN if q.unacked is None else count(q.unacked)


def fill_text(q: QueueStats) -> str:
    """Ready messages against ``x-max-length`` (which does not count unacked ones)."""
    cap_n = q.max_length
    if not cap_n:
        return "-"
    fill = q.fill
    if fill is None:
        return f"{UNKNOWN} / {cap(cap_n)}"
    return f"{fill * 100:.0f}% / {cap(cap_n)}"


def oldest_text(q: QueueStats) -> str:
    if q.down:
        return UNKNOWN
    if q.ready == 0:
        return "-"
    if q.oldest_age is None or not q.oldest_age_known:
        return "?"
    return duration(q.oldest_age)


def eta_text(q: QueueStats) -> str:
    if q.down:
        return UNKNOWN
    if q.ready == 0:
        return "-"
    return duration(q.drain_eta)


def out_rate(q: QueueStats) -> float:
    """Messages/s that left the queue (acked, or delivered with auto-ack). Not deliveries: a
    read that requeues (the DLQ browser's peek, a consumer's nack) takes nothing out."""
    return q.ack_rate + q.no_ack_rate


def dlq_text(q: QueueStats) -> str:
    if q.is_dlq or q.dlq_depth is None:
        return "-"
    text = count(q.dlq_depth)
    if q.dlq_growth:
        text += f" {q.dlq_growth:+d}"
    return text


#: The text of each queue column (same order as :data:`QUEUE_COLUMNS`).
QUEUE_COLUMN_TEXT: tuple[Callable[[QueueStats], str], ...] = (
    lambda q: q.name, lambda q: q.type, state_text, ready_text,
    unacked_text, lambda q: str(q.consumers), lambda q: rate(q.publish_rate),
    lambda q: rate(out_rate(q)) + ("" if q.rate_limit is None else f"/{q.rate_limit:g}"),
    oldest_text, eta_text, fill_text, dlq_text,
)
_RIGHT = tuple(c.right for c in QUEUE_COLUMNS)


def queue_cell(i: int, q: QueueStats, severity: str | None, problem: str | None = None) -> Text:
    """Cell ``i`` of ``q``'s row: the name coloured by ``severity``, the state by its value,
    a cell an alert is about by that alert's severity (``problem``), numbers right-aligned."""
    value = QUEUE_COLUMN_TEXT[i](q)
    if problem is not None and i:
        return Text(value, style=SEVERITY_STYLE.get(problem, ""),
                    justify="right" if _RIGHT[i] else "left", no_wrap=True)
    if i == 0:
        return Text(value, style=SEVERITY_STYLE.get(severity, ""), no_wrap=True)
    if i == 2:
        return Text(value, style=STATE_STYLE.get(value, ""), no_wrap=True)
    if q.down and i == 3:
        return Text(value, style=STATE_STYLE["down"], justify="right", no_wrap=True)
    return Text(value, justify="right" if _RIGHT[i] else "left", no_wrap=True)


def size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}GiB"

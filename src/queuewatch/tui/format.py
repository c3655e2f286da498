"""Pure formatting of snapshot values into table cells (no widgets here)."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text

from queuewatch.monitor.model import Alert, QueueStats, fmt_duration

SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", None: ""}
STATE_STYLE = {
    "running": "green", "idle": "dim green", "flow": "yellow", "down": "bold red",
    "crashed": "bold red", "stopped": "red", "minority": "red",
}

#: (column key, label, width, right-aligned). Order is the table's order.
QUEUE_COLUMNS: tuple[tuple[str, str, int, bool], ...] = (
    ("name", "Queue", 0, False),
    ("type", "Type", 7, False),
    ("state", "State", 8, False),
    ("ready", "Ready", 8, True),
    ("unacked", "Unacked", 9, True),
    ("consumers", "Cons", 6, True),
    ("in", "In/s", 7, True),
    ("out", "Out/s", 7, True),
    ("oldest", "Oldest", 8, True),
    ("eta", "Drain ETA", 11, True),
    ("fill", "Fill (cap)", 12, True),
    ("dlq", "DLQ", 9, True),
)
QUEUE_COLUMN_KEYS = tuple(c[0] for c in QUEUE_COLUMNS)


def severity_by_target(alerts: Iterable[Alert]) -> dict[str, str]:
    """The worst alert severity per target (queue, worker or node name)."""
    worst: dict[str, str] = {}
    for a in alerts:
        if worst.get(a.target) != "critical":
            worst[a.target] = a.severity
    return worst


def count(n: int | None) -> str:
    if n is None:
        return "-"
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


def fill_text(q: QueueStats) -> str:
    if q.fill is None or q.max_length is None:
        return "-"
    return f"{q.fill * 100:.0f}% / {cap(q.max_length)}"


def oldest_text(q: QueueStats) -> str:
    if q.ready == 0:
        return "-"
    if q.oldest_age is None or not q.oldest_age_known:
        return "?"
    return fmt_duration(q.oldest_age)


def eta_text(q: QueueStats) -> str:
    if q.ready == 0:
        return "-"
    return fmt_duration(q.drain_eta)


def dlq_text(q: QueueStats) -> str:
    if q.is_dlq or q.dlq_depth is None:
        return "-"
    text = count(q.dlq_depth)
    if q.dlq_growth:
        text += f" {q.dlq_growth:+d}"
    return text


def queue_row(q: QueueStats) -> tuple[str, ...]:
    """One table row for ``q`` as plain strings (cheap to compare between refreshes)."""
    return (
        q.name, q.type, q.state, count(q.ready), count(q.unacked), str(q.consumers),
        rate(q.publish_rate), rate(q.deliver_rate), oldest_text(q), eta_text(q),
        fill_text(q), dlq_text(q),
    )


_RIGHT = tuple(c[3] for c in QUEUE_COLUMNS)


def queue_cell(i: int, value: str, severity: str | None) -> Text:
    """The styled cell ``i`` of a row: the name coloured by ``severity``, numbers right-aligned."""
    if i == 0:
        return Text(value, style=SEVERITY_STYLE.get(severity, ""))
    if i == 2:
        return Text(value, style=STATE_STYLE.get(value, ""))
    return Text(value, justify="right" if _RIGHT[i] else "left")


def _num(x: float | None, missing: float = -1.0) -> float:
    return missing if x is None else x


def queue_sort_value(q: QueueStats, column: str) -> object:
    """The value ``column`` sorts by (numbers as numbers, unknowns first)."""
    return {
        "name": q.name,
        "type": q.type,
        "state": q.state,
        "ready": q.ready,
        "unacked": q.unacked,
        "consumers": q.consumers,
        "in": q.publish_rate,
        "out": q.deliver_rate,
        "oldest": _num(q.oldest_age),
        "eta": _num(q.drain_eta),
        "fill": _num(q.fill),
        "dlq": _num(None if q.dlq_depth is None else float(q.dlq_depth)),
    }[column]


def size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}GiB"

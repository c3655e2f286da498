"""A bounded history per queue, for sparklines and trend questions."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import NamedTuple

from queuewatch.monitor.model import QueueStats


class HistoryPoint(NamedTuple):
    """One queue at one poll, reduced to what a sparkline draws (immutable, cheap to build)."""

    taken_at: float
    """Epoch seconds of the poll."""
    ready: int
    unacked: int
    consumers: int
    publish_rate: float
    ack_rate: float
    oldest_age: float | None

    @property
    def total(self) -> int:
        return self.ready + self.unacked


class QueueHistory:
    """The last ``size`` points of every queue seen; queues that vanish are forgotten."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("history size must be >= 1")
        self.size = size
        self._points: dict[tuple[str, str], deque[HistoryPoint]] = {}

    def record(self, taken_at: float, queues: Iterable[QueueStats]) -> None:
        seen: set[tuple[str, str]] = set()
        for q in queues:
            seen.add(q.key)
            points = self._points.get(q.key)
            if points is None:
                points = self._points[q.key] = deque(maxlen=self.size)
            if q.ready is None or q.unacked is None:
                continue  # down: no numbers to draw; its history is kept for when it is back
            points.append(
                HistoryPoint(taken_at, q.ready, q.unacked, q.consumers, q.publish_rate, q.ack_rate,
                             q.oldest_age)
            )
        if len(seen) != len(self._points):
            for key in set(self._points) - seen:
                del self._points[key]

    def get(self, name: str, vhost: str | None = None) -> tuple[HistoryPoint, ...]:
        """Oldest first; empty when the queue is unknown."""
        for (vh, qname), points in self._points.items():
            if qname == name and (vhost is None or vh == vhost):
                return tuple(points)
        return ()

    def totals(self, name: str, vhost: str | None = None) -> list[int]:
        """Ready + unacked per poll, oldest first (what a depth sparkline draws)."""
        return [p.total for p in self.get(name, vhost)]

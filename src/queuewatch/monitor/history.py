"""A bounded history per queue, for sparklines and trend questions.

Kept compact, as the console may watch 50,000 queues: the poll times once for all queues,
and per queue one ``array('f')`` ring of six float32 values per poll (ready, unacked,
consumers, publish rate, ack rate, oldest age; NaN where unknown) — about 2.9 KB per queue
at the default 120 polls, where a deque of tuples took 15.7 KB. Counts are exact up to
16,777,216 (float32), rates and ages keep 7 significant digits.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Iterable
from typing import NamedTuple

from queuewatch.monitor.model import QueueStats

_FIELDS = 6
_NAN = float("nan")
#: The name of a vhost's totals series (no queue is named ""): per poll, the job queues' ready,
#: unacked, consumers, in/s and out/s summed in the loop that records the queues (queuewatch's
#: own queues, server-named ones and DLQs left out, as the console's summary band does).
TOTALS = ""
#: Queues that are not jobs' queues: queuewatch's delay levels and control queues, and
#: server-named exclusive queues.
INTERNAL_PREFIXES = ("queuewatch.", "amq.gen-")


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


class _Series:
    """One queue's ring: slot ``(poll - first) % size`` holds poll number ``poll``."""

    __slots__ = ("first", "last", "values")

    def __init__(self, first: int) -> None:
        self.first = first
        """The number of the first poll that saw the queue."""
        self.last = first
        """The number of the last poll that saw it."""
        self.values = array("f")


def _store(s: _Series, at: int, size: int, row: tuple[float, ...]) -> None:
    """Put ``row`` in the slot of ``s``'s poll number ``first + at``."""
    values = s.values
    if at < size:
        values.extend(row)
    else:
        i = (at % size) * _FIELDS
        values[i], values[i + 1], values[i + 2] = row[0], row[1], row[2]
        values[i + 3], values[i + 4], values[i + 5] = row[3], row[4], row[5]


def _short(value: float) -> float:
    """A float32 read back as the value that was stored (0.1, not 0.10000000149)."""
    return float(f"{value:.7g}")


class QueueHistory:
    """The last ``size`` polls of every queue seen; queues that vanish are forgotten. A poll
    where a queue was down keeps no point (its history is kept for when it is back)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("history size must be >= 1")
        self.size = size
        self._times: deque[float] = deque(maxlen=size)
        """Times of the last ``size`` polls, oldest first."""
        self._polls = 0
        """Polls recorded so far (the next poll's number)."""
        self._series: dict[tuple[str, str], _Series] = {}
        self._totals_vhosts: set[str] = set()
        """Vhosts with a totals series: a poll that saw none of their job queues up is a gap."""

    def record(self, taken_at: float, queues: Iterable[QueueStats]) -> None:
        poll, size, series = self._polls, self.size, self._series
        seen = 0
        sums: dict[str, list[float]] = {}
        vhost, acc = None, [0.0] * 5
        for q in queues:
            key = q.key
            s = series.get(key)
            if s is None:
                s = series[key] = _Series(poll)
            seen += 1
            at = poll - s.first
            if q.ready is None or q.unacked is None:  # down: no numbers to draw
                row: tuple[float, ...] = (_NAN, _NAN, _NAN, _NAN, _NAN, _NAN)
            else:
                row = (q.ready, q.unacked, q.consumers, q.publish_rate, q.ack_rate,
                       _NAN if q.oldest_age is None else q.oldest_age)
                if not q.is_dlq and not q.name.startswith(INTERNAL_PREFIXES):
                    if q.vhost != vhost:
                        vhost, acc = q.vhost, sums.setdefault(q.vhost, [0.0] * 5)
                    acc[0] += q.ready
                    acc[1] += q.unacked
                    acc[2] += q.consumers
                    acc[3] += q.publish_rate
                    acc[4] += q.ack_rate + q.no_ack_rate
            values = s.values  # inline (not _store): 50,000 calls a poll
            if at < size:
                values.extend(row)
            else:
                i = (at % size) * _FIELDS
                values[i], values[i + 1], values[i + 2] = row[0], row[1], row[2]
                values[i + 3], values[i + 4], values[i + 5] = row[3], row[4], row[5]
            s.last = poll
        self._totals_vhosts.update(sums)
        for vh in self._totals_vhosts:
            s = series.get((vh, TOTALS))
            if s is None:
                s = series[(vh, TOTALS)] = _Series(poll)
            seen += 1
            sum_row = sums.get(vh)
            _store(s, poll - s.first, size,
                   (*sum_row, _NAN) if sum_row is not None else (_NAN,) * _FIELDS)
            s.last = poll
        self._times.append(taken_at)
        self._polls = poll + 1
        if seen != len(series):  # some vanished: forget them
            for key in [k for k, s in series.items() if s.last != poll]:
                del series[key]

    def get(self, name: str, vhost: str | None = None) -> tuple[HistoryPoint, ...]:
        """Oldest first; empty when the queue is unknown."""
        for (vh, qname), s in self._series.items():
            if qname == name and (vhost is None or vh == vhost):
                return self._points(s)
        return ()

    def vhost_totals(self, vhost: str) -> tuple[HistoryPoint, ...]:
        """The vhost's totals per poll (see :data:`TOTALS`), oldest first; ``oldest_age`` is
        None. A poll that saw none of its job queues up keeps no point."""
        s = self._series.get((vhost, TOTALS))
        return () if s is None else self._points(s)

    def totals(self, name: str, vhost: str | None = None) -> list[int]:
        """Ready + unacked per poll, oldest first (what a depth sparkline draws)."""
        return [p.total for p in self.get(name, vhost)]

    def _points(self, s: _Series) -> tuple[HistoryPoint, ...]:
        n = min(self._polls - s.first, self.size)
        times = list(self._times)[len(self._times) - n:]
        v, size, out = s.values, self.size, []
        for k, at in enumerate(times):
            i = ((self._polls - n + k - s.first) % size) * _FIELDS
            ready = v[i]
            if ready != ready:  # NaN: the queue was down at that poll
                continue
            age = v[i + 5]
            out.append(HistoryPoint(at, int(ready), int(v[i + 1]), int(v[i + 2]), _short(v[i + 3]),
                                    _short(v[i + 4]), None if age != age else _short(age)))
        return tuple(out)

"""The per-queue history kept compactly (float32 rings): what goes in comes out, in order."""

from __future__ import annotations

from dataclasses import replace

from queuewatch.monitor.history import HistoryPoint, QueueHistory
from queuewatch.monitor.model import QueueStats

NOW = 1_700_000_000.0


def q(name: str = "jobs", ready: int | None = 0, **kw: object) -> QueueStats:
    base = QueueStats(vhost="v", name=name, type="classic", state="running", ready=ready,
                      unacked=0 if ready is not None else None, consumers=0)
    return replace(base, **kw)  # type: ignore[arg-type]


def test_points_come_back_as_recorded_oldest_first_after_the_ring_wraps() -> None:
    # Given a history of 4 polls and 11 polls of one queue with changing numbers
    h = QueueHistory(size=4)
    for i in range(11):
        h.record(NOW + 5 * i, [q(ready=1000 + i, unacked=i, consumers=i % 3, publish_rate=0.1 * i,
                                 ack_rate=12.5 + i, oldest_age=None if i % 2 else 30.25 * i)])
    # Then the last 4 come back, oldest first, with their times and values as given
    assert h.get("jobs") == tuple(
        HistoryPoint(NOW + 5 * i, 1000 + i, i, i % 3, round(0.1 * i, 6), 12.5 + i,
                     None if i % 2 else 30.25 * i) for i in range(7, 11))
    assert h.totals("jobs") == [1000 + 2 * i for i in range(7, 11)]


def test_a_queue_seen_later_has_only_its_own_polls_and_gaps_while_down() -> None:
    # Given "a" from the start and "b" from the third poll, down at the fourth
    h = QueueHistory(size=5)
    for i in range(6):
        queues = [q("a", ready=i)]
        if i >= 2:
            queues.append(q("b", ready=None if i == 3 else 100 + i))
        h.record(NOW + i, queues)
    # Then "a" keeps the last 5 polls, "b" the polls it was up in
    assert [p.taken_at for p in h.get("a")] == [NOW + i for i in range(1, 6)]
    assert [(p.taken_at, p.ready) for p in h.get("b")] == [(NOW + 2, 102), (NOW + 4, 104),
                                                          (NOW + 5, 105)]


def test_a_queue_that_vanished_and_came_back_starts_over() -> None:
    h = QueueHistory(size=3)
    h.record(NOW, [q("a", ready=1), q("b", ready=1)])
    h.record(NOW + 1, [q("a", ready=2)])  # b vanished: forgotten
    h.record(NOW + 2, [q("a", ready=3), q("b", ready=7)])
    assert h.totals("b") == [7]
    assert h.totals("a") == [1, 2, 3]
    assert h.get("b", vhost="other") == ()


def test_large_counts_keep_float32_precision() -> None:
    # Counts are exact up to 2**24; beyond, within one part in 16 million
    h = QueueHistory(size=2)
    h.record(NOW, [q(ready=16_777_216, unacked=3)])
    h.record(NOW + 1, [q(ready=123_456_789, unacked=0)])
    exact, big = h.get("jobs")
    assert (exact.ready, exact.unacked) == (16_777_216, 3)
    assert abs(big.ready - 123_456_789) <= 123_456_789 / 2**23

"""Workers that beat but do not consume: their alert, and what an orphaned queue really has.

A worker's heartbeat lists, per queue it should consume, whether its consumer is live and,
if not, since when and why (:class:`~queuewatch.telemetry.ConsumerStatus`). A worker whose
heartbeat is fresh but some consumer is not live is *not consuming*: it is up, yet jobs in
that queue wait. The advice depends on why.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from queuewatch.monitor.model import Alert, QueueStats, WorkerStats, fmt_duration
from queuewatch.telemetry import ConsumerStatus, consumer_advice

#: A worker that has not consumed a queue for this long is critical (seconds); before that,
#: a warning (the worker subscribes again by itself, usually within seconds).
NOT_CONSUMING_CRITICAL = 60.0

def not_consuming_for(w: WorkerStats, c: ConsumerStatus) -> float:
    """Seconds the consumer has not been live, at the time of the poll (``since`` is on the
    monitor's clock: see :func:`on_monitor_clock`)."""
    return max(w.last_heartbeat + w.heartbeat_age - c.since, 0.0)


def on_monitor_clock(consumers: Iterable[ConsumerStatus], sent_at: float,
                     received_at: float) -> tuple[ConsumerStatus, ...]:
    """The consumers of a heartbeat with ``since`` moved from the worker's clock to ours
    (by the beat's own send and receive times), so durations survive clock skew."""
    shift = received_at - sent_at
    return tuple(replace(c, since=c.since + shift) for c in consumers)


def not_consuming_alert(w: WorkerStats) -> Alert | None:
    """One alert per worker that beats but does not consume some of its queues."""
    if w.state != "not_consuming":
        return None
    gaps = sorted(w.not_consuming, key=lambda c: -not_consuming_for(w, c))
    longest = not_consuming_for(w, gaps[0])
    parts = []
    for c in gaps:
        why = c.cause or "unknown"
        said = f": {c.reason}" if c.reason else ""
        parts.append(f"{c.queue!r} for {fmt_duration(not_consuming_for(w, c))} ({why}{said}): "
                     f"{consumer_advice(why)}")
    return Alert(
        "critical" if longest >= NOT_CONSUMING_CRITICAL else "warning", "worker_not_consuming",
        w.worker_id,
        f"worker {w.worker_id} ({w.host} pid {w.pid}) is running but not consuming "
        + "; ".join(parts),
        longest, NOT_CONSUMING_CRITICAL,
    )


def orphaned_reason(name: str, q: QueueStats, workers: Iterable[WorkerStats]) -> str:
    """Why a queue with messages has no consumers: a running worker that should consume it
    but does not (say why, and that another worker is not the fix), or no worker at all."""
    stuck = [(w, c) for w in workers if w.state == "not_consuming"
             for c in w.not_consuming if c.queue == q.name]
    if not stuck:
        return (f"{name!r} has {q.total} messages and no consumers: start a worker for it, or "
                "delete the queue if nobody needs it")
    w, c = stuck[0]
    more = f" (and {len(stuck) - 1} more worker(s))" if len(stuck) > 1 else ""
    return (f"{name!r} has {q.total} messages and no consumers, but worker {w.worker_id}"
            f"{more} should consume it and is not, for {fmt_duration(not_consuming_for(w, c))} "
            f"({c.cause or 'unknown'}): {consumer_advice(c.cause)}")

"""Detectors: live and hung workers, stuck jobs, stalled and orphaned queues.

Pure functions and one small stateful tracker; the monitor feeds them each poll.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from queuewatch.monitor.consuming import on_monitor_clock
from queuewatch.monitor.freshness import ALWAYS_LIVE, jobs_on_monitor_clock, judge_beat
from queuewatch.monitor.heartbeats import ReceivedHeartbeat
from queuewatch.monitor.kinds import kind_of
from queuewatch.monitor.model import FeedStatus, QueueStats, StuckJob, WorkerStats
from queuewatch.monitor.queues import RATE_EPSILON, is_infrastructure
from queuewatch.telemetry import PRODUCER_ROLE


def build_workers(
    beats: Mapping[str, ReceivedHeartbeat],
    now: float,
    stale_after: float,
    open_connections: set[str] | None,
    feed: FeedStatus = ALWAYS_LIVE,
) -> tuple[WorkerStats, ...]:
    """Workers from their latest heartbeats; ``open_connections`` None means "not looked up".

    Silence is judged against ``feed`` (:func:`~queuewatch.monitor.freshness.judge_beat`):
    only a stale worker whose connection the broker still lists is hung."""
    workers = []
    for worker_id in sorted(beats):
        rb = beats[worker_id]
        hb = rb.heartbeat
        if hb.role == PRODUCER_ROLE:
            continue  # a producer's beat (see monitor.producers)
        age = max(now - rb.received_at, 0.0)
        state = judge_beat(rb.received_at, now, stale_after, feed)
        conn_open: bool | None = None
        if open_connections is not None and hb.connection_name and state == "stale":
            conn_open = hb.connection_name in open_connections
        interval = hb.interval if hb.interval > 0 else 1.0
        done = hb.succeeded + hb.failed + hb.retried + hb.dead_lettered
        workers.append(
            WorkerStats(
                worker_id=hb.worker_id, host=hb.host, pid=hb.pid, queues=tuple(hb.queues),
                concurrency=hb.concurrency, cpu_percent=hb.cpu_percent, rss_bytes=hb.rss_bytes,
                in_flight=jobs_on_monitor_clock(hb.in_flight, hb.sent_at, rb.received_at),
                jobs_per_second=done / interval,
                errors=hb.failed + hb.dead_lettered, last_heartbeat=rb.received_at,
                heartbeat_age=age, connection_name=hb.connection_name, connection_open=conn_open,
                hung=state == "stale" and conn_open is True, heartbeat_state=state,
                consumers=on_monitor_clock(hb.consumers, hb.sent_at, rb.received_at),
            )
        )
    return tuple(workers)


def needs_connection_check(
    beats: Mapping[str, ReceivedHeartbeat], now: float, stale_after: float,
    feed: FeedStatus = ALWAYS_LIVE,
) -> bool:
    """True when some worker went stale and named its connection: only then ask the broker."""
    return any(
        rb.heartbeat.connection_name and judge_beat(rb.received_at, now, stale_after, feed) == "stale"
        for rb in beats.values()
    )


def find_stuck_jobs(
    workers: Iterable[WorkerStats], now: float, threshold_for: Callable[[str], float]
) -> tuple[StuckJob, ...]:
    """In-flight jobs older than their queue's threshold, oldest first.

    Only fresh beats count, and a job's age is how long it had run at the latest beat that
    still listed it (what is known, not a guess about now): the in-flight list of an unknown
    or stale worker is old news, and a beat taken just before our feed went silent must not
    make its jobs age on (see :mod:`~queuewatch.monitor.freshness`)."""
    stuck = []
    for w in workers:
        if w.heartbeat_state != "fresh":
            continue
        for job in w.in_flight:
            threshold = threshold_for(job.queue)
            age = min(now, w.last_heartbeat) - job.started_at
            if age > threshold:
                stuck.append(
                    StuckJob(
                        job_id=job.job_id, queue=job.queue, attempt=job.attempt,
                        worker_id=w.worker_id, host=w.host, pid=w.pid,
                        started_at=job.started_at, age=age, threshold=threshold,
                    )
                )
    return tuple(sorted(stuck, key=lambda s: -s.age))


def find_orphaned(queues: Iterable[QueueStats], qualified: bool = False) -> tuple[str, ...]:
    """Queues with messages and no consumers (DLQs and delay levels are meant to sit idle),
    as refs (:meth:`QueueStats.ref`)."""
    return tuple(
        q.ref(qualified) for q in queues
        if (q.depth or 0) > 0 and q.consumers == 0 and not is_infrastructure(q.name)
        and kind_of(q.type).drains
    )


class StallTracker:
    """Counts consecutive polls in which a queue had messages and consumers but no acks."""

    def __init__(self, polls: int) -> None:
        self.polls = max(int(polls), 1)
        self._count: dict[tuple[str, str], int] = {}
        self._acks: dict[tuple[str, str], int | None] = {}

    def update(self, queues: Iterable[QueueStats], acks: Mapping[tuple[str, str], int | None],
               qualified: bool = False) -> tuple[str, ...]:
        """Feed one poll; returns the queues stalled for at least ``polls`` polls (refs)."""
        stalled = []
        counts: dict[tuple[str, str], int] = {}
        for q in queues:
            ack = acks.get(q.key)
            busy = (q.depth or 0) > 0 and q.consumers > 0 and kind_of(q.type).drains
            previous = self._acks.get(q.key)
            acked = q.ack_rate > RATE_EPSILON or q.no_ack_rate > RATE_EPSILON or (
                ack is not None and previous is not None and ack > previous
            )
            counts[q.key] = self._count.get(q.key, 0) + 1 if busy and not acked else 0
            if counts[q.key] >= self.polls:
                stalled.append(q.ref(qualified))
        self._count = counts
        self._acks = dict(acks)
        return tuple(stalled)

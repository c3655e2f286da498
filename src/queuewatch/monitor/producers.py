"""Outbox-enabled producers, from the heartbeats they send with ``role = "producer"``
(:mod:`queuewatch.producer.beats`): their spool's depth and age, judged fresh or stale by
the same rule as workers, and an ``outbox_backlog`` alert when a spool holds jobs that have
waited long or fills up."""

from __future__ import annotations

from collections.abc import Mapping

from queuewatch.config import Thresholds
from queuewatch.monitor.freshness import ALWAYS_LIVE, judge_beat
from queuewatch.monitor.heartbeats import ReceivedHeartbeat
from queuewatch.monitor.model import Alert, FeedStatus, ProducerStats, fmt_duration
from queuewatch.telemetry import PRODUCER_ROLE


def is_producer(rb: ReceivedHeartbeat) -> bool:
    return rb.heartbeat.role == PRODUCER_ROLE


def build_producers(beats: Mapping[str, ReceivedHeartbeat], now: float, stale_after: float,
                    feed: FeedStatus = ALWAYS_LIVE) -> tuple[ProducerStats, ...]:
    out = []
    for key in sorted(beats):
        rb = beats[key]
        hb = rb.heartbeat
        if not is_producer(rb) or hb.outbox is None:
            continue
        ob = hb.outbox
        since = max(now - rb.received_at, 0.0)
        out.append(ProducerStats(
            producer_id=hb.worker_id, host=hb.host, pid=hb.pid, heartbeat_age=since,
            heartbeat_state=judge_beat(rb.received_at, now, stale_after, feed),
            outbox_depth=ob.depth,
            outbox_oldest_age=None if ob.oldest_age is None else ob.oldest_age + since,
            outbox_cap=ob.cap, draining=ob.draining, blocked=ob.blocked))
    return tuple(out)


def producer_alerts(producers: tuple[ProducerStats, ...], t: Thresholds) -> tuple[Alert, ...]:
    """``outbox_backlog``: the oldest spooled job waited past the consumer-lag thresholds
    (``oldest_age_warning``/``_critical``), or the spool is past ``fill_warning`` of its cap."""
    alerts = []
    for p in producers:
        if p.outbox_depth <= 0:
            continue
        age = p.outbox_oldest_age or 0.0
        fill = p.outbox_depth / p.outbox_cap if p.outbox_cap > 0 else 0.0
        if age >= t.oldest_age_critical or fill >= t.fill_critical:
            severity = "critical"
        elif age >= t.oldest_age_warning or fill >= t.fill_warning:
            severity = "warning"
        else:
            continue
        state = "draining" if p.draining else ("blocked by the broker" if p.blocked
                                                else "waiting for the broker")
        alerts.append(Alert(
            severity, "outbox_backlog", p.producer_id,  # type: ignore[arg-type]
            f"outbox of {p.producer_id} on {p.host} holds {p.outbox_depth:,} jobs "
            f"({fill:.0%} of its cap {p.outbox_cap:,}), the oldest waiting "
            f"{fmt_duration(age)} ({state}): they reach their queues only when the producer "
            "can publish again", value=age, threshold=t.oldest_age_warning))
    return tuple(alerts)

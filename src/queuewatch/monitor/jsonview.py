"""One function turns a Snapshot into the documented JSON shape of ``status --json``.

Field names here are a public contract (docs/monitoring.md): add fields, never rename.
Durations are seconds; ``null`` means unknown or never, and a ``*_text`` twin says which
(``"unknown"``, ``"never"``, ``"3m12s"``). JSON has no infinity, so none is emitted.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from queuewatch.monitor.consuming import not_consuming_for
from queuewatch.monitor.model import QueueStats, Snapshot, WorkerStats, fmt_duration
from queuewatch.telemetry import ConsumerStatus

SCHEMA_VERSION = 1


def _seconds(value: float | None) -> float | None:
    if value is None or math.isinf(value):
        return None
    return round(value, 3)


def queue_to_json(q: QueueStats) -> dict[str, Any]:
    fill = q.fill
    return {
        "vhost": q.vhost, "name": q.name, "type": q.type, "state": q.state,
        "down": q.down, "down_reason": q.down_reason,
        "node": q.node, "leader": q.leader, "members": list(q.members), "online": list(q.online),
        "ready": q.ready, "unacked": q.unacked, "total": q.depth, "consumers": q.consumers,
        "consumer_utilisation": q.consumer_utilisation,
        "publish_rate": q.publish_rate, "deliver_rate": q.deliver_rate, "ack_rate": q.ack_rate,
        "redeliver_rate": q.redeliver_rate, "no_ack_rate": q.no_ack_rate, "net_rate": q.net_rate,
        "message_bytes": q.message_bytes,
        "max_length": q.max_length, "max_length_bytes": q.max_length_bytes,
        "fill_ratio": None if fill is None else round(fill, 4),
        "oldest_age_seconds": _seconds(q.oldest_age), "oldest_age_known": q.oldest_age_known,
        "oldest_age_text": fmt_duration(q.oldest_age),
        "drain_eta_seconds": _seconds(q.drain_eta), "drain_eta_text": fmt_duration(q.drain_eta),
        "full_eta_seconds": _seconds(q.full_eta),
        "full_eta_text": None if q.full_eta is None else fmt_duration(q.full_eta),
        "is_dlq": q.is_dlq, "dlq": q.dlq, "dlq_depth": q.dlq_depth, "dlq_growth": q.dlq_growth,
        "stuck_after_seconds": q.stuck_after,
        "paused": q.paused, "rate_limit": q.rate_limit, "scheduled": q.scheduled,
    }


def worker_to_json(w: WorkerStats) -> dict[str, Any]:
    return {
        "worker_id": w.worker_id, "host": w.host, "pid": w.pid, "queues": list(w.queues),
        "concurrency": w.concurrency, "cpu_percent": w.cpu_percent, "rss_bytes": w.rss_bytes,
        "in_flight": [asdict(j) for j in w.in_flight], "jobs_per_second": w.jobs_per_second,
        "errors": w.errors, "last_heartbeat": w.last_heartbeat,
        "heartbeat_age_seconds": round(w.heartbeat_age, 3),
        "connection_name": w.connection_name, "connection_open": w.connection_open,
        "hung": w.hung, "heartbeat_state": w.heartbeat_state,
        "state": w.state,
        "consumers": [_consumer_to_json(w, c) for c in w.consumers],
        "not_consuming": [c.queue for c in w.not_consuming],
    }


def _consumer_to_json(w: WorkerStats, c: ConsumerStatus) -> dict[str, Any]:
    """A worker's consumer of one queue; ``since`` is epoch seconds on the monitor's clock."""
    out: dict[str, Any] = {"queue": c.queue, "live": c.live, "since": round(c.since, 3),
                           "cause": c.cause, "reason": c.reason}
    if not c.live:
        out["not_consuming_seconds"] = round(not_consuming_for(w, c), 3)
    return out


def snapshot_to_json(snap: Snapshot) -> dict[str, Any]:
    """The ``status --json`` document (also what the TUI and exporter read, as values)."""
    return {
        "schema": SCHEMA_VERSION,
        "taken_at": snap.taken_at,
        "vhost": snap.vhost,
        "poll_seconds": round(snap.poll_seconds, 4),
        "broker": asdict(snap.broker),
        "nodes": [asdict(n) for n in snap.nodes],
        "nodes_hidden": snap.nodes_hidden,
        "queues": [queue_to_json(q) for q in snap.queues],
        "workers": [worker_to_json(w) for w in snap.workers],
        "stuck_jobs": [asdict(s) for s in snap.stuck_jobs],
        "stalled_queues": list(snap.stalled_queues),
        "orphaned_queues": list(snap.orphaned_queues),
        "alerts": [asdict(a) for a in snap.alerts],
        "heartbeats": None if snap.heartbeats is None else asdict(snap.heartbeats),
    }

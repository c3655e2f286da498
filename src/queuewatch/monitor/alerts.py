"""Alerts: each with a severity and a sentence a person can act on."""

from __future__ import annotations

from collections.abc import Iterable

from queuewatch.config import Thresholds
from queuewatch.monitor.model import (
    Alert,
    NodeStats,
    QueueStats,
    StuckJob,
    WorkerStats,
    fmt_duration,
    queue_ref,
)


def queue_alerts(q: QueueStats, t: Thresholds, qualified: bool = False) -> list[Alert]:
    """``qualified``: a snapshot of all vhosts, where targets are ``vhost/name``."""
    out: list[Alert] = []
    ref = q.ref(qualified)
    age = q.oldest_age
    # Dead letters wait by design and nothing consumes a DLQ, so lag there is not an alarm:
    # a DLQ alerts on growth instead (below, on its job queue).
    if age is not None and q.ready > 0 and age > t.oldest_age_warning and not q.is_dlq:
        critical = age > t.oldest_age_critical
        out.append(Alert(
            "critical" if critical else "warning", "oldest_age", ref,
            f"oldest ready message in {ref!r} has waited {fmt_duration(age)} "
            f"({q.ready} ready, {q.consumers} consumers, drains in {fmt_duration(q.drain_eta)}): "
            "add workers or find what slows them",
            age, t.oldest_age_critical if critical else t.oldest_age_warning,
        ))
    fill = q.fill
    if fill is not None and fill >= t.fill_warning:
        critical = fill >= t.fill_critical
        out.append(Alert(
            "critical" if critical else "warning", "fill", ref,
            f"{ref!r} is {fill:.0%} full ({q.total}/{q.max_length}); at the cap publishers are "
            f"refused (full in {fmt_duration(q.full_eta)}): add consumers or raise max_length",
            fill, t.fill_critical if critical else t.fill_warning,
        ))
    if q.dlq and q.dlq_growth is not None and q.dlq_growth > t.dlq_growth_warning:
        dlq = queue_ref(q.vhost, q.dlq, qualified)
        where = f" --vhost {q.vhost}" if qualified else ""
        out.append(Alert(
            "warning", "dlq_growth", dlq,
            f"{q.dlq_growth} new dead letters in {dlq!r} since the last poll "
            f"({q.dlq_depth} in total): inspect them with 'queuewatch dlq list {q.name}{where}'",
            float(q.dlq_growth), t.dlq_growth_warning,
        ))
    return out


def build_alerts(
    queues: Iterable[QueueStats],
    nodes: Iterable[NodeStats],
    workers: Iterable[WorkerStats],
    stuck: Iterable[StuckJob],
    stalled: Iterable[str],
    orphaned: Iterable[str],
    t: Thresholds,
    qualified: bool = False,
) -> tuple[Alert, ...]:
    """Every alert of one poll, critical first. ``stalled`` and ``orphaned`` are queue refs
    (:meth:`QueueStats.ref`); ``qualified``: a snapshot of all vhosts."""
    by_ref = {q.ref(qualified): q for q in queues}
    out: list[Alert] = []
    for n in nodes:
        if not n.running:
            out.append(Alert("critical", "node_down", n.name,
                             f"node {n.name} is down: check it with 'rabbitmq-diagnostics status'"))
        if n.mem_alarm:
            out.append(Alert("critical", "broker_alarm", n.name,
                             f"memory alarm on {n.name}: publishers are blocked; drain queues or "
                             "raise vm_memory_high_watermark"))
        if n.disk_alarm:
            out.append(Alert("critical", "broker_alarm", n.name,
                             f"disk alarm on {n.name}: publishers are blocked; free disk space or "
                             "lower disk_free_limit"))
    for q in by_ref.values():
        out.extend(queue_alerts(q, t, qualified))
    for name in stalled:
        q = by_ref[name]
        out.append(Alert("critical", "stalled", name,
                         f"{name!r} has {q.total} messages and {q.consumers} consumers but no acks "
                         f"for {t.stalled_polls} polls: its consumers are stuck; look at "
                         "'queuewatch jobs stuck' and restart them", float(q.total)))
    for name in orphaned:
        q = by_ref[name]
        out.append(Alert("warning", "orphaned", name,
                         f"{name!r} has {q.total} messages and no consumers: start a worker for "
                         "it, or delete the queue if nobody needs it", float(q.total)))
    for w in workers:
        if w.hung:
            out.append(Alert("critical", "hung_worker", w.worker_id,
                             f"worker {w.worker_id} ({w.host} pid {w.pid}) sent no heartbeat for "
                             f"{fmt_duration(w.heartbeat_age)} but its connection is still open, "
                             f"holding {len(w.in_flight)} jobs: kill the process so they are "
                             "redelivered", w.heartbeat_age))
    for s in stuck:
        out.append(Alert("warning", "stuck_job", s.job_id,
                         f"job {s.job_id} in {s.queue!r} has run {fmt_duration(s.age)} on "
                         f"{s.worker_id} ({s.host} pid {s.pid}), over {fmt_duration(s.threshold)}: "
                         f"cancel it with 'queuewatch jobs cancel {s.job_id}'", s.age, s.threshold))
    return tuple(sorted(out, key=lambda a: a.severity != "critical"))

"""Alerts: each with a severity and a sentence a person can act on."""

from __future__ import annotations

from collections.abc import Iterable

from queuewatch.config import Thresholds
from queuewatch.monitor.consuming import not_consuming_alert, orphaned_reason
from queuewatch.monitor.kinds import majority
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
    ref = q.ref(qualified)
    if q.down:  # nothing else about it is known: no lag, fill or DLQ verdicts
        return [queue_down_alert(q, ref)]
    out: list[Alert] = replica_alerts(q, ref)
    age = q.oldest_age
    # Dead letters wait by design and nothing consumes a DLQ, so lag there is not an alarm:
    # a DLQ alerts on growth instead (below, on its job queue).
    # A paused queue's backlog waits by design too.
    if age is not None and (q.ready or 0) > 0 and age > t.oldest_age_warning and not q.is_dlq \
            and not q.paused:
        critical = age > t.oldest_age_critical
        out.append(Alert(
            "critical" if critical else "warning", "oldest_age", ref,
            f"oldest ready message in {ref!r} has waited {fmt_duration(age)} "
            f"({q.ready} ready, {q.consumers} consumers, {_draining(q.drain_eta)}): "
            "add workers or find what slows them",
            age, t.oldest_age_critical if critical else t.oldest_age_warning,
        ))
    fill = q.fill
    if fill is not None and fill >= t.fill_warning:
        critical = fill >= t.fill_critical
        out.append(Alert(
            "critical" if critical else "warning", "fill", ref,
            f"{ref!r} is {fill:.0%} full ({q.ready} ready of max-length {q.max_length}); at the "
            f"cap publishers are refused ({_filling(q.full_eta)}): add consumers or raise "
            "max_length",
            fill, t.fill_critical if critical else t.fill_warning,
        ))
    if q.dlq and q.dlq_growth is not None and q.dlq_growth > t.dlq_growth_warning:
        dlq = queue_ref(q.vhost, q.dlq, qualified)
        where = f" --vhost {q.vhost}" if qualified else ""
        out.append(Alert(
            "warning", "dlq_growth", dlq,
            f"{_plural(q.dlq_growth, 'new dead letter')} in {dlq!r} since the last poll "
            f"({q.dlq_depth} in total): inspect them with 'queuewatch dlq list {q.name}{where}'",
            float(q.dlq_growth), t.dlq_growth_warning,
        ))
    return out


def queue_down_alert(q: QueueStats, ref: str) -> Alert:
    """A queue that cannot serve: why, and what brings it back."""
    if q.members:
        offline = ", ".join(m for m in q.members if m not in q.online)
        return Alert(
            "critical", "queue_down", ref,
            f"{q.type} queue {ref!r} is down: {q.down_reason}; nothing can be published to or "
            f"consumed from it: bring back the nodes of its offline members ({offline}) so that "
            "a majority is online", float(len(q.online)), float(majority(len(q.members))),
        )
    where = f"start node {q.node} again" if q.node else "bring its node back"
    return Alert(
        "critical", "queue_down", ref,
        f"{q.type} queue {ref!r} is down: {q.down_reason}; its messages stay on that node and "
        f"nothing can be consumed from it meanwhile: {where} ('rabbitmq-diagnostics status' "
        "there); depth and lag are unknown until then",
    )


def replica_alerts(q: QueueStats, ref: str) -> list[Alert]:
    """A replicated queue that still serves but has lost members."""
    offline = [m for m in q.members if m not in q.online]
    if not offline:
        return []
    spare = len(q.online) - majority(len(q.members))
    return [Alert(
        "warning", "members_offline", ref,
        f"{q.type} queue {ref!r} has {len(q.online)} of {len(q.members)} members online "
        f"({', '.join(offline)} offline): it still serves, but losing {spare + 1} more member"
        f"{'s' if spare else ''} stops it; bring {', '.join(offline)} back",
        float(len(q.online)), float(len(q.members)),
    )]


def partition_alerts(nodes: Iterable[NodeStats]) -> list[Alert]:
    """One critical alert per partition reported (a pair both sides report counts once)."""
    out: list[Alert] = []
    seen: set[frozenset[str]] = set()
    for n in sorted(nodes, key=lambda n: n.name):
        peers = [p for p in n.partitions if frozenset((n.name, p)) not in seen]
        seen.update(frozenset((n.name, p)) for p in n.partitions)
        if not peers:
            continue
        out.append(Alert(
            "critical", "partition", n.name,
            f"network partition: node {n.name} and {', '.join(peers)} each saw the other go down "
            "and now hold diverging views of the cluster (with cluster_partition_handling "
            "'ignore' both sides keep running): pick the side to keep, then restart the nodes "
            "of the other side ('rabbitmqctl stop_app' and 'start_app' on each); see "
            "https://www.rabbitmq.com/partitions.html", float(len(n.partitions)),
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
    nodes = tuple(nodes)
    out: list[Alert] = partition_alerts(nodes)
    for n in nodes:
        if not n.running:
            out.append(Alert("critical", "node_down", n.name,
                             f"node {n.name} is down or cut off from the node that answered (a "
                             "stopped node, or a network partition: then each side calls the "
                             "other down): check it with 'rabbitmq-diagnostics status' on it"))
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
    workers = tuple(workers)
    for name in orphaned:
        q = by_ref[name]
        out.append(Alert("warning", "orphaned", name, orphaned_reason(name, q, workers),
                         float(q.total)))
    for w in workers:
        idle = not_consuming_alert(w)
        if idle is not None:
            out.append(idle)
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


def _filling(full_eta: float | None) -> str:
    """``full in 41s``, or ``not filling now`` (never "full in never")."""
    if full_eta is None or full_eta == float("inf"):
        return "not filling now"
    return "full now" if full_eta <= 0 else f"full in {fmt_duration(full_eta)}"


def _draining(drain_eta: float | None) -> str:
    if drain_eta is None or drain_eta == float("inf"):
        return "not draining"
    return f"drains in {fmt_duration(drain_eta)}"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"

"""Deterministic snapshots for rendering tests and benchmarks (canned values, no broker)."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace

from queuewatch import envelope as env
from queuewatch.dlq.model import DeadLetter, make_dead_letter
from queuewatch.jobs.state import JobState, JobStatus
from queuewatch.monitor.model import (
    Alert,
    BrokerInfo,
    FeedStatus,
    NodeStats,
    QueueStats,
    Snapshot,
    StuckJob,
    WorkerStats,
)
from queuewatch.telemetry import InFlightJob

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
BROKER = BrokerInfo(url="http://guest:***@127.0.0.1:15672", version="3.10.8", cluster_name="rabbit@demo")
NODE = NodeStats(name="rabbit@demo", running=True)


def _job_queue(name: str, i: int, **kw: object) -> QueueStats:
    base: dict[str, object] = dict(
        vhost="demo", name=name, type="classic", state="running", ready=0, unacked=0,
        consumers=2, max_priority=10, overflow="reject-publish", dead_letter_exchange="",
        dead_letter_routing_key=f"{name}.dlq", dlq=f"{name}.dlq", dlq_depth=0, stuck_after=300.0,
    )
    base.update(kw)
    return QueueStats(**base)  # type: ignore[arg-type]


def demo_snapshot(step: int = 0) -> Snapshot:
    """A small, busy broker: a healthy queue, a lagging one, one at its cap, a growing DLQ."""
    t = T0 + 5 * step
    queues = (
        _job_queue("emails", 0, ready=12 + step, unacked=4, publish_rate=40.0, deliver_rate=38.5,
                   ack_rate=38.5, oldest_age=2.0, oldest_age_known=True, drain_eta=math.inf,
                   max_length=10_000, dlq_depth=0),
        _job_queue("thumbnails", 1, ready=4_210, unacked=8, consumers=1, publish_rate=25.0,
                   deliver_rate=6.2, ack_rate=6.2, oldest_age=412.0, oldest_age_known=True,
                   drain_eta=math.inf, max_length=5_000, full_eta=41.0, dlq_depth=37,
                   dlq_growth=3),
        _job_queue("reports", 2, ready=1_000, unacked=2, consumers=1, publish_rate=0.0,
                   deliver_rate=3.0, ack_rate=3.0, oldest_age=95.0, oldest_age_known=True,
                   drain_eta=333.0, max_length=1_000, dlq_depth=2),
        _job_queue("webhooks", 3, ready=57, unacked=0, consumers=0, publish_rate=1.5,
                   oldest_age=61.0, oldest_age_known=True, drain_eta=math.inf, dlq_depth=0),
        QueueStats(vhost="demo", name="celery", type="classic", state="idle", ready=3, unacked=0,
                   consumers=1, oldest_age=None, oldest_age_known=False, drain_eta=30.0),
        QueueStats(vhost="demo", name="emails.dlq", type="classic", state="idle", ready=0,
                   unacked=0, consumers=0, is_dlq=True),
        QueueStats(vhost="demo", name="thumbnails.dlq", type="classic", state="running",
                   ready=37, unacked=0, consumers=0, is_dlq=True),
        QueueStats(vhost="demo", name="reports.dlq", type="classic", state="idle", ready=2,
                   unacked=0, consumers=0, is_dlq=True),
        QueueStats(vhost="demo", name="queuewatch.delay.3", type="quorum", state="running",
                   ready=5, unacked=0, consumers=0, drain_eta=8.0),
    )
    job = InFlightJob(job_id="7f3c9a", queue="thumbnails", attempt=2, started_at=t - 640)
    workers = (
        WorkerStats(worker_id="worker-a1", host="demo-host", pid=4101, queues=("emails",),
                    concurrency=8, cpu_percent=23.0, rss_bytes=61_000_000, in_flight=(),
                    jobs_per_second=38.5, errors=0, last_heartbeat=t - 0.4, heartbeat_age=0.4,
                    connection_open=True),
        WorkerStats(worker_id="worker-t1", host="demo-host", pid=4102, queues=("thumbnails",),
                    concurrency=4, cpu_percent=97.0, rss_bytes=210_000_000, in_flight=(job,),
                    jobs_per_second=6.2, errors=3, last_heartbeat=t - 0.8, heartbeat_age=0.8,
                    connection_open=True),
        WorkerStats(worker_id="worker-r1", host="demo-host", pid=4103, queues=("reports",),
                    concurrency=1, cpu_percent=0.0, rss_bytes=48_000_000, in_flight=(),
                    jobs_per_second=0.0, errors=0, last_heartbeat=t - 42, heartbeat_age=42.0,
                    connection_open=True, hung=True, heartbeat_state="stale"),
    )
    stuck = (StuckJob(job_id="7f3c9a", queue="thumbnails", attempt=2, worker_id="worker-t1",
                      host="demo-host", pid=4102, started_at=t - 640, age=640.0, threshold=300.0),)
    alerts = (
        Alert("critical", "oldest_age", "thumbnails", "oldest message waited 6m52s (> 5m00s)",
              412.0, 300.0),
        Alert("warning", "fill", "thumbnails", "84% of max-length 5000; full in 41s", 0.84, 0.8),
        Alert("critical", "fill", "reports", "at its cap: 100% of max-length 1000; publishers get "
              "nacks", 1.0, 0.95),
        Alert("warning", "dlq_growth", "thumbnails.dlq", "DLQ grew by 3 since the last poll", 3, 0),
        Alert("warning", "orphaned", "webhooks", "57 messages and no consumers"),
        Alert("critical", "hung_worker", "worker-r1", "no heartbeat for 42s while connected"),
        Alert("warning", "stuck_job", "7f3c9a", "job 7f3c9a has run 10m40s on worker-t1 (> 5m)"),
    )
    return Snapshot(
        taken_at=t, vhost="demo", broker=BROKER, nodes=(NODE,), queues=queues, workers=workers,
        stuck_jobs=stuck, orphaned_queues=("webhooks",), alerts=alerts, poll_seconds=0.05,
        heartbeats=FeedStatus(True, t - 3600, checked_at=t),
    )


def many_queues(n: int, step: int = 0, seed: int = 7, changed: float = 1.0) -> Snapshot:
    """``n`` queues; each step changes the counters/rates of a ``changed`` fraction of them."""
    rng = random.Random(seed * 1_000_003 + step)
    base = random.Random(seed)
    queues = []
    for i in range(n):
        moves = rng.random() < changed
        ready = base.randrange(0, 50_000) + (rng.randrange(0, 500) if moves else 0)
        rate_in = base.random() * 200 + (rng.random() * 20 if moves else 0)
        rate_out = base.random() * 200 + (rng.random() * 20 if moves else 0)
        queues.append(QueueStats(
            vhost="bench", name=f"service-{i // 50:03d}.queue-{i:05d}", type="classic",
            state="running", ready=ready, unacked=base.randrange(0, 100), consumers=base.randrange(0, 8),
            publish_rate=round(rate_in, 1), deliver_rate=round(rate_out, 1),
            ack_rate=round(rate_out, 1), oldest_age=float(base.randrange(0, 900)),
            oldest_age_known=True, drain_eta=ready / rate_out if rate_out > rate_in else math.inf,
            max_length=100_000, dlq=f"q{i}.dlq", dlq_depth=base.randrange(0, 20),
        ))
    return Snapshot(taken_at=T0 + 5 * step, vhost="bench", broker=BROKER, nodes=(NODE,),
                    queues=tuple(queues))


def demo_dead_letters(n: int = 4) -> list[DeadLetter]:
    """Dead letters as a queuewatch worker parks them (fixed times, for snapshot tests)."""
    out = []
    errors = [("ValueError", "invalid literal for int() with base 10: 'x'"),
              ("TimeoutError", "upstream thumbnailer did not answer in 30s")]
    for i in range(n):
        etype, emsg = errors[i % len(errors)]
        dead_ms = int((T0 - 60 * (i + 1)) * 1000)
        headers = {
            env.H_ATTEMPT: 5, env.H_DEAD_REASON: "failed", env.H_ERROR_TYPE: etype,
            env.H_ERROR_MESSAGE: emsg, env.H_ORIGINAL_EXCHANGE: "",
            env.H_ORIGINAL_ROUTING_KEY: "thumbnails", env.H_ORIGINAL_QUEUE: "thumbnails",
            env.H_DEAD_AT_MS: dead_ms, env.H_FIRST_FAILED_MS: dead_ms - 31_000,
            env.H_PUBLISHED_MS: dead_ms - 40_000, env.H_WORKER: "worker-t1",
            env.H_TRACEBACK: 'Traceback (most recent call last):\n  File "thumbs.py", line 12, in '
                             f"handle\n    size = int(job['size'])\n{etype}: {emsg}",
        }
        body = json.dumps({"image": f"s3://photos/{1000 + i}.jpg", "size": "x"}).encode()
        out.append(make_dead_letter(
            position=i, body=body, headers=headers, routing_key="thumbnails.dlq",
            properties={"message_id": f"job-{i:04d}-{'abcdef'[i % 6]}", "content_type": "application/json",
                        "delivery_mode": 2},
        ))
    return out


def demo_scheduled(now: float = T0) -> list[JobStatus]:
    """Jobs waiting for their time, as the job events fold them (the Scheduled view)."""
    ms = int(now * 1000)
    return [
        JobStatus("b81e44", JobState.RETRYING, queue="thumbnails", attempt=2, since_ms=ms - 4_000,
                  due_ms=ms + 26_000, error_type="TimeoutError",
                  error="upstream thumbnailer did not answer in 30s"),
        JobStatus("report-2026-01", JobState.SCHEDULED, queue="reports", attempt=0,
                  since_ms=ms - 600_000, due_ms=ms + 3_300_000),
        JobStatus("c0ffee", JobState.SCHEDULED, queue="emails", attempt=0, since_ms=ms - 30_000,
                  due_ms=ms + 95_000),
        JobStatus("d15ea5e", JobState.RETRYING, queue="emails", attempt=4, since_ms=ms - 2_000,
                  due_ms=ms + 7_000, error_type="ConnectionError", error="smtp: connection reset"),
    ]


def demo_busy_snapshot(step: int = 0) -> Snapshot:
    """:func:`demo_snapshot` with more jobs in flight: three on the emails worker, one on the
    hung worker (whose stale beat is old news: the Busy view does not list it)."""
    snap = demo_snapshot(step)
    t = snap.taken_at
    emails = tuple(InFlightJob(job_id=f"mail-{i:03d}", queue="emails", attempt=1 + i // 2,
                               started_at=t - 0.4 - age) for i, age in enumerate((3.0, 41.0, 0.5)))
    old = (InFlightJob(job_id="r-9", queue="reports", attempt=1, started_at=t - 600),)
    workers = tuple(
        replace(w, in_flight=emails) if w.worker_id == "worker-a1"
        else replace(w, in_flight=old) if w.worker_id == "worker-r1" else w
        for w in snap.workers)
    return replace(snap, workers=workers)

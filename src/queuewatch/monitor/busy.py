"""Every job running right now, from worker heartbeats: the console's Busy view.

The same rules as stuck jobs (:mod:`queuewatch.monitor.freshness`): only fresh beats count,
so while our heartbeat feed is down (or a worker went silent) its in-flight list is old news
and is not shown; a job's running time is how long it had run at the latest beat that listed
it, on the worker's own clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from queuewatch.monitor.model import Snapshot, WorkerStats


@dataclass(frozen=True)
class BusyJob:
    """One in-flight job."""

    job_id: str
    queue: str
    attempt: int
    worker_id: str
    host: str
    started_at: float
    """Epoch seconds on the monitor's clock."""
    running_for: float
    """Seconds it had run at the latest beat that listed it."""


def busy_jobs(workers: Iterable[WorkerStats], now: float) -> tuple[BusyJob, ...]:
    """In-flight jobs of workers with a fresh heartbeat, longest running first."""
    out = [
        BusyJob(job_id=j.job_id, queue=j.queue, attempt=j.attempt, worker_id=w.worker_id,
                host=w.host, started_at=j.started_at,
                running_for=max(min(now, w.last_heartbeat) - j.started_at, 0.0))
        for w in workers if w.heartbeat_state == "fresh" for j in w.in_flight
    ]
    return tuple(sorted(out, key=lambda b: (-b.running_for, b.job_id)))


def not_heard(snapshot: Snapshot) -> int:
    """Workers whose in-flight jobs are not known now (their heartbeat is not fresh)."""
    return sum(1 for w in snapshot.workers if w.heartbeat_state != "fresh")

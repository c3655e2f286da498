"""Operator actions on a job by id that the job events make possible: cancel a job that is
queued, scheduled or waiting for a retry, and run a scheduled job now.

A running job is cancelled by its worker (:func:`queuewatch.operator.cancel_job`); one that
has not started is cancelled with a tombstone (:mod:`queuewatch.events.cancels`) that every
worker honours when the job comes up, and a ``cancel_requested`` event so its status says
``cancelled`` at once. "Run now" republishes the scheduled job's stored message (same job
id, a new copy id) and tombstones only the delayed copy. Both are refused under read-only
and written to the audit log.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

from queuewatch.audit import AuditLog, require_writable
from queuewatch.broker.publish import ConfirmedPublisher, Properties
from queuewatch.broker.streams import declare_stream
from queuewatch.envelope import H_COPY, new_job_id
from queuewatch.errors import QueuewatchError
from queuewatch.events import model as ev
from queuewatch.events.cancels import CONTENT_TYPE, Tombstone, cancels_arguments, cancels_stream
from queuewatch.events.model import Event, Source
from queuewatch.jobs.api import Jobs, check_job_id
from queuewatch.jobs.state import JobState, JobStatus

#: States in which a job has not started its (next) run.
PENDING = (JobState.QUEUED, JobState.SCHEDULED, JobState.RETRYING)


class JobActionError(QueuewatchError):
    """The job is not in a state the action applies to."""


@dataclass(frozen=True)
class ActionResult:
    job_id: str
    action: str
    state_before: JobState
    detail: str


async def _tombstone(jobs: Jobs, stone: Tombstone) -> None:
    publisher = ConfirmedPublisher(jobs.link)
    try:
        stream = cancels_stream(jobs.settings.events_stream)
        await declare_stream(lambda: jobs.link.channel(timeout=30.0), stream,
                             cancels_arguments(jobs.settings.events_max_age))
        result = await publisher.publish(
            stone.encode(), exchange="", routing_key=stream, queue=stream,
            properties=Properties(content_type=CONTENT_TYPE, delivery_mode=2))
    finally:
        await publisher.close()
    if not result.ok:
        raise JobActionError(f"the cancellation of job {stone.job_id} was not recorded: "
                             f"{result.outcome.value} ({result.detail})")


def _source() -> Source:
    from queuewatch.audit import current_user

    return Source("operator", name=current_user())


async def cancel_pending(jobs: Jobs, job_id: str, *, reason: str = "cancelled by operator",
                         audit: AuditLog | None = None) -> ActionResult:
    """Cancel a job that is queued, scheduled or waiting for its retry."""
    check_job_id(job_id)
    require_writable(jobs.settings, "cancel")
    audit = audit or AuditLog.from_settings(jobs.settings)
    audit.check()
    target = {"vhost": jobs.settings.effective_vhost, "job_id": job_id}
    status = await jobs.status(job_id)
    try:
        _require(status, PENDING, "cancel")
        await _tombstone(jobs, Tombstone(job_id, None, reason, int(time.time() * 1000)))
        await jobs.recorder.record(Event(ev.CANCEL_REQUESTED, job_id, status.queue or "",
                                         status.attempt, _source(), data={"reason": reason}))
    except QueuewatchError as exc:
        audit.record("cancel", target, "error", detail=str(exc))
        raise
    audit.record("cancel", target, "ok", count=1, detail=f"was {status.state.value}")
    return ActionResult(job_id, "cancel", status.state,
                        f"job {job_id} was {status.state.value}; workers skip it when it comes up")


async def run_now(jobs: Jobs, job_id: str, *, audit: AuditLog | None = None) -> ActionResult:
    """Publish a scheduled job now (same id) and skip its delayed copy."""
    check_job_id(job_id)
    require_writable(jobs.settings, "run-now")
    audit = audit or AuditLog.from_settings(jobs.settings)
    audit.check()
    target = {"vhost": jobs.settings.effective_vhost, "job_id": job_id}
    status = await jobs.status(job_id)
    try:
        _require(status, (JobState.SCHEDULED,), "run now")
        stored = status.data.get("message")
        if not isinstance(stored, dict) or not status.queue:
            raise JobActionError(f"job {job_id} has no stored message to run now (its body "
                                 "was over the size kept for run-now); cancel it and publish again")
        old_copy = stored.get("copy")
        headers: dict[str, Any] = dict(stored.get("headers") or {})
        new_copy = new_job_id()[:12]
        headers[H_COPY] = new_copy
        for key in ("qw-target", "x-qw-delay-ms"):
            headers.pop(key, None)
        publisher = ConfirmedPublisher(jobs.link)
        try:
            result = await publisher.publish(
                base64.b64decode(stored.get("body") or ""), exchange="", routing_key=status.queue,
                queue=status.queue, properties=Properties(
                    content_type=stored.get("content_type"), delivery_mode=2,
                    priority=stored.get("priority"), message_id=job_id, headers=headers))
        finally:
            await publisher.close()
        if not result.ok:
            raise JobActionError(f"job {job_id} could not be published to {status.queue!r}: "
                                 f"{result.outcome.value} ({result.detail})")
        await _tombstone(jobs, Tombstone(job_id, str(old_copy), "run now: the job was published "
                                         "again without its delay", int(time.time() * 1000)))
        await jobs.recorder.record(Event(ev.ACCEPTED, job_id, status.queue, 1, _source(),
                                         data={"run_now": True, "copy": new_copy}))
    except QueuewatchError as exc:
        audit.record("run-now", target, "error", detail=str(exc))
        raise
    audit.record("run-now", target, "ok", count=1)
    return ActionResult(job_id, "run-now", status.state,
                        f"job {job_id} published to {status.queue!r} now; its delayed copy is skipped")


def _require(status: JobStatus, states: tuple[JobState, ...], action: str) -> None:
    if status.state in states:
        return
    if status.state is JobState.UNKNOWN:
        raise JobActionError(f"job {status.job_id} is unknown (never recorded, or past retention)")
    if status.state is JobState.RUNNING:
        raise JobActionError(f"job {status.job_id} is running on "
                             f"{status.worker.name if status.worker else 'a worker'}: "
                             "use `queuewatch jobs cancel` with the worker's cancel")
    raise JobActionError(f"cannot {action} job {status.job_id}: it is {status.state.value}")

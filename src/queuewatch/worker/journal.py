"""What a worker records about each job it runs (see :mod:`queuewatch.events`).

``started`` is emitted (it leaves with the next batch); the outcome — succeeded, attempt
failed + retry scheduled, dead-lettered, cancelled — is built here and recorded by the
processor *before* it acks the job, so an acked job always has its outcome on record. A
success's event also waits in the idempotency store until it is confirmed: a process that
died after recording the key but before the event leaves it there for the redelivery to
record (:meth:`queuewatch.worker.process.Processor._duplicate`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from queuewatch import envelope
from queuewatch.errors import ConfigError
from queuewatch.events import model as ev
from queuewatch.events.model import Source, line
from queuewatch.events.recorder import EventRecorder
from queuewatch.topology import check_webhook_url
from queuewatch.worker.job import Job, NonRetryable
from queuewatch.worker.outcomes import Failure

log = logging.getLogger(__name__)


class ResultError(NonRetryable):
    """A handler's return value cannot be stored: not JSON, or over ``result_max_bytes``.
    The job fails without a retry (running it again returns the same value)."""


class Journal:
    """The worker's side of job events: builds them, hands them to ``recorder``."""

    def __init__(self, recorder: EventRecorder, worker_id: str, result_max_bytes: int) -> None:
        self.recorder = recorder
        self.source = Source("worker", name=worker_id)
        self.result_max_bytes = result_max_bytes

    def _event(self, kind: str, job: Job, attempt: int | None = None, **data: Any) -> str:
        return line(kind, job.job_id, job.queue, job.attempt if attempt is None else attempt,
                    self.source, {k: v for k, v in data.items() if v is not None})

    def started(self, job: Job) -> None:
        data: dict[str, Any] | None = _REDELIVERED if job.redelivered else None
        if envelope.H_WEBHOOK in job.headers and (url := _webhook(job)) is not None:
            # (a client of another library records no accepted: the header is read here)
            data = {**(data or {}), "webhook": url}
        self.recorder.emit(line(ev.STARTED, job.job_id, job.queue, job.attempt, self.source,
                                data))

    def replayed_by_shovel(self, job: Job, dlq: str | None, replays: int) -> None:
        """``job`` came out of its DLQ through a shovel replay, which moves messages inside
        the broker and records no event: the worker records the ``replayed`` when it sees
        the job arrive (through the replay exchange). Its id is the job's and the replay's
        (``replays``: the count before it), so a redelivery records no second one."""
        self.recorder.emit(line(ev.REPLAYED, job.job_id, job.queue, 0, self.source,
                                {"to": job.queue, "dlq": dlq, "via": "shovel"},
                                event_id=f"{job.job_id}.shovel-replay.{replays}"))

    def check_result(self, value: Any) -> Any:
        """``value`` as it will be stored (JSON), or ResultError."""
        if value is None:
            return None
        try:
            text = json.dumps(value, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ResultError(f"the handler returned a value that is not JSON "
                              f"({type(value).__name__}): {exc}") from exc
        if len(text.encode()) > self.result_max_bytes:
            raise ResultError(f"the handler's result is {len(text.encode()):,} bytes, over "
                              f"result_max_bytes ({self.result_max_bytes:,})")
        return json.loads(text)

    def succeeded(self, job: Job, duration: float, result: Any) -> str:
        data: dict[str, Any] = {"duration": round(duration, 6)}
        if result is not None:
            data["result"] = result
        return line(ev.SUCCEEDED, job.job_id, job.queue, job.attempt, self.source, data)

    def failed(self, job: Job, failure: Failure, duration: float | None) -> str:
        return self._event(ev.ATTEMPT_FAILED, job, error_type=failure.error_type,
                           error=failure.message, traceback=failure.traceback or None,
                           duration=None if duration is None else round(duration, 6))

    def retry(self, job: Job, delay_seconds: int) -> str:
        due = int((time.time() + delay_seconds) * 1000)
        return self._event(ev.RETRY_SCHEDULED, job, next_attempt=job.attempt + 1, due=due,
                           delay=delay_seconds)

    def dead(self, job: Job, reason: str, failure: Failure, dlq: str | None,
             cancelled: bool = False) -> str:
        return self._event(ev.CANCELLED if cancelled else ev.DEAD_LETTERED, job, reason=reason,
                           dlq=dlq, error_type=failure.error_type, error=failure.message)

    def duplicate(self, job: Job, key: str) -> str:
        """``job`` was not run: its idempotency ``key`` was done already (by another job with
        the same key, or by an earlier delivery of this one). Its status ends ``succeeded``
        (what the key stands for is done) with ``data.duplicate_key``, and no result; before,
        it stayed ``queued`` for good, and a caller waiting for it waited for ever."""
        return self._event(ev.SUCCEEDED, job, duplicate_key=key)

    def skipped(self, job: Job, reason: str, whole: bool = True) -> str:
        return self._event(ev.SKIPPED, job, reason=reason, copy_only=None if whole else True)

    def record_soon(self, *events: str) -> asyncio.Future[bool]:
        """The future says whether the broker confirmed them (False: held out)."""
        return self.recorder.record_soon(*events)

    async def record(self, *events: str) -> bool:
        return await self.recorder.record(*events)


_REDELIVERED: dict[str, Any] = {"redelivered": True}


def _webhook(job: Job) -> str | None:
    """The job's own webhook (``x-qw-webhook``), when it is a valid URL; else None, logged."""
    value = job.headers.get(envelope.H_WEBHOOK)
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    try:
        return check_webhook_url(value, f"job {job.job_id}'s {envelope.H_WEBHOOK} header")
    except ConfigError as exc:
        log.warning("%s: no webhook for it", exc)
        return None

"""One delivery, start to finish: decode, skip duplicates, run the handler, then settle.

Settling follows the no-loss rule: success -> record the idempotency key -> ack; failure ->
publish a retry or dead-letter copy, wait for its confirm -> ack. If the copy cannot be
confirmed the original is requeued instead, never dropped.

Each delivery runs in a task of the worker's own (:meth:`Processor.spawn`), not in the
channel's: when the broker closes a channel under a running job (``consumer_timeout``, a
cancel), the job runs to its end and its success is recorded in the idempotency store, so
the broker's redelivery of it is skipped as a duplicate. Within one worker a job never runs
twice at once (:mod:`.claims`): a delivery whose idempotency key is held by a running copy
waits for that copy to end (without a concurrency slot), then is skipped if it succeeded, or
runs if it did not. Workers in other processes cannot see that claim; with a shared store (Redis) they skip
the job only once the first run has recorded it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from queuewatch import envelope
from queuewatch.broker.delivery import Delivery
from queuewatch.broker.publish import ConfirmedPublisher
from queuewatch.idempotency import IdempotencyStore, OutcomeStore
from queuewatch.producer.locks import Locks
from queuewatch.topology import QueueSpec
from queuewatch.worker import outcomes
from queuewatch.worker.acks import Acks
from queuewatch.worker.cancels import CancelList
from queuewatch.worker.claims import Claims
from queuewatch.worker.decode import decode_body
from queuewatch.worker.hooks import SUCCEEDED, WorkerObserver
from queuewatch.worker.job import Handler, Job, MalformedPayload, NonRetryable
from queuewatch.worker.journal import Journal, ResultError
from queuewatch.worker.limits import NO_TOKENS, QueueLimiter
from queuewatch.worker.outcomes import Failure
from queuewatch.worker.ratelimit import TokenBucket
from queuewatch.worker.settle import channel_gone
from queuewatch.worker.settling import Settling

log = logging.getLogger(__name__)


@dataclass
class Running:
    """A job a worker is running (shown in heartbeats; cancellable by an operator)."""

    job_id: str
    queue: str
    attempt: int
    started_at: float
    task: asyncio.Task[Any] | None
    cancel_reason: str | None = None
    settled: bool = False
    message: Delivery | None = None
    """The delivery (its channel tells whether the broker still holds it for us)."""


@dataclass
class Counts:
    """Outcomes since the last heartbeat."""

    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    duplicates: int = 0

    def take(self) -> Counts:
        snapshot = Counts(self.succeeded, self.failed, self.retried, self.dead_lettered,
                          self.duplicates)
        self.succeeded = self.failed = self.retried = self.dead_lettered = self.duplicates = 0
        return snapshot


@dataclass
class Route:
    """A queue the worker consumes and how its jobs run."""

    spec: QueueSpec
    handler: Handler
    bucket: TokenBucket | None = None
    """``rate_limit_per_process``: this process's own token bucket."""
    limiter: QueueLimiter | None = None
    """The queue-wide (and per-key) rate limit, over every worker."""


@dataclass(frozen=True)
class Fault:
    """A run that failed: settled (a retry or a dead letter) once its slot is free."""

    reason: str
    failure: Failure
    exc: BaseException
    started: float
    retry: bool
    """False: dead-lettered at once (non-retryable, cancelled)."""


@dataclass
class Processor(Settling):
    worker_id: str
    delay_levels: int
    semaphore: asyncio.Semaphore
    observer: WorkerObserver
    store: IdempotencyStore | None
    max_payload_bytes: int
    running: dict[int, Running] = field(default_factory=dict)
    counts: Counts = field(default_factory=Counts)
    publisher: ConfirmedPublisher | None = None
    """Publishes retry and dead-letter copies (confirmed, mandatory)."""
    accepting: bool = True
    """False once a graceful shutdown began: prefetched jobs no longer start."""
    active: set[asyncio.Task[Any]] = field(default_factory=set)
    """Tasks running or settling a job (a graceful shutdown waits for them)."""
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    """Every delivery's task, waiting ones included (a shutdown ends them all)."""
    claims: Claims = field(default_factory=Claims)
    """Idempotency keys of deliveries under way (one run of a job at a time here)."""
    journal: Journal | None = None
    """Records each job's events (started, outcome) when job events are on."""
    locks: Locks | None = None
    """Releases the key of a job published with ``unique_for`` when it finishes."""
    cancels: CancelList | None = None
    """Jobs cancelled before they ran (skipped when they come up)."""
    paused: set[str] = field(default_factory=set)
    """Paused queues: a prefetched job of one goes back to its queue unstarted."""
    acks: Acks = field(default_factory=Acks)
    """Every ack of this worker's deliveries goes through it (coalesced per channel)."""
    _next: int = 0
    _ack_lost_seen: dict[str, tuple[float, int]] = field(default_factory=dict)
    """Per queue: when the last "ack lost" line was logged, and how many were not since."""

    def __post_init__(self) -> None:
        self.outcomes = self.store if isinstance(self.store, OutcomeStore) else None
        """The store, when it keeps outcomes until they are confirmed on record."""

    # -- deliveries -------------------------------------------------------------------
    def spawn(self, message: Delivery, route: Route) -> None:
        """Handle ``message`` in a task of the worker's own (see the module docstring).
        A plain function, so aio-pika calls it without a task of its own."""
        task = asyncio.get_running_loop().create_task(self.handle(message, route))
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("handling a delivery failed", exc_info=task.exception())

    # -- the pipeline -----------------------------------------------------------------
    async def handle(self, message: Delivery, route: Route) -> None:
        spec = route.spec
        headers = message.headers or {}
        # A job replayed out of its DLQ starts over: the client replay resets the attempt
        # header, a shovel cannot (it moves messages as they are), so its exchange says so.
        shovelled = envelope.is_shovel_replay(message.exchange)
        attempt = 1 if shovelled else envelope.attempt_of(headers)
        # A foreign message without a message_id: its Celery or Dramatiq id, else a fresh
        # one that its retry and dead-letter copies carry as their message_id (a delivery
        # tag starts at 1 again on every channel: it names no job).
        job_id = (envelope.job_id_of(message.message_id, headers, message.body)
                  or envelope.new_job_id())
        try:
            payload = decode_body(message.body, message.content_type, self.max_payload_bytes)
        except MalformedPayload as exc:
            job = self._job(message, spec, job_id, attempt, None)
            await self._dead(message, job, outcomes.REASON_MALFORMED,
                             Failure("MalformedPayload", str(exc)), 0.0, exc, spec=spec)
            return
        job = self._job(message, spec, job_id, attempt, payload)
        if shovelled and self.journal is not None:
            self.journal.replayed_by_shovel(job, spec.dlq_name if spec.dlq else None,
                                            envelope.replay_count_of(headers))
        if self.cancels is not None:
            verdict = self.cancels.verdict(job_id, headers.get(envelope.H_COPY))
            if verdict is not None:
                await self._skip(message, job, *verdict)
                return
        key = job.idempotency_key
        if key is not None:
            await self.claims.acquire(key, job_id, spec.name)
        try:
            await self._handle(message, route, job, key)
        finally:
            if key is not None:
                self.claims.release(key)

    async def _handle(self, message: Delivery, route: Route, job: Job,
                      key: str | None) -> None:
        if self.store is not None and key is not None and await self._duplicate(job, key):
            self.counts.duplicates += 1
            self.observer.on_duplicate(job.queue, job.job_id)
            if self.journal is not None and key != job.job_id:
                # Another job with the same key (or this one again): its own status says
                # why it ends here (a key that is the job id: the run that did it said so).
                await self.journal.record(self.journal.duplicate(job, key))
            await self.acks.ack(message)
            return
        if route.bucket is not None:
            await route.bucket.acquire()
        task = asyncio.current_task()
        try:
            slot = await self._slot(route, job)
            try:
                if not self.accepting:
                    return  # shutting down: leave it unacked, the broker requeues it
                if channel_gone(message):
                    return  # prefetched on a channel the broker closed: it was requeued
                if job.queue in self.paused:
                    await self.acks.reject(message, requeue=True)  # paused: back, unstarted
                    return
                if task is not None:
                    self.active.add(task)
                ran = await self._run(message, route, job)
            finally:
                slot.release()
            if isinstance(ran, Fault):
                # Settled outside the slot too: a copy the broker refuses (or a link down)
                # requeues the job after a pause (settle.REQUEUE_PAUSE), which need not keep
                # the next job waiting. It is still acked only once its copy is confirmed.
                await self._settle(message, route, job, ran)
            else:
                duration, value = ran
                # Recorded and acked outside the concurrency slot, so the next job starts
                # while the record waits for its group commit.
                if self.journal is not None:
                    try:
                        stored = self.journal.check_result(value)
                    except ResultError as exc:
                        await self._dead(message, job, outcomes.REASON_NON_RETRYABLE,
                                         Failure.from_exception(exc), time.monotonic() - duration,
                                         exc, spec=route.spec)
                        return
                    # The key is given the event's record: the store commits the key alone
                    # once the event is on record, or with the event if it was not (see
                    # _duplicate). The ack waits for both.
                    event = self.journal.succeeded(job, duration, stored)
                    recorded = self.journal.record_soon(event)
                    if self.store is not None and key is not None:
                        await self._mark_completed(key, event, recorded)
                    await recorded
                elif self.store is not None and key is not None:
                    await self.store.mark_completed(key)
                if not await self.acks.ack(message):
                    self._ack_lost(job, key)
                await self._release(message)
                self.counts.succeeded += 1
                self.observer.on_job_end(job, SUCCEEDED, duration, None)
        finally:
            if task is not None:
                self.active.discard(task)

    async def _slot(self, route: Route, job: Job) -> asyncio.Semaphore:
        """Take the job's rate-limit tokens, then a concurrency slot; returns the semaphore
        whose slot it holds.

        A job waits for its slot after its tokens. A limit set meanwhile (a first one on a
        queue that had none, a per-key one added) found it past the limiter with nothing
        taken, and the whole prefetch started unlimited: such a job gives its slot back and
        takes what the limit in force asks first (:meth:`QueueLimiter.owes`)."""
        taken = NO_TOKENS
        while True:
            if route.limiter is not None:
                taken = await route.limiter.acquire(job, taken)
            slot = self.semaphore
            await slot.acquire()
            if route.limiter is None or not route.limiter.owes(job, taken):
                return slot
            slot.release()

    async def _settle(self, message: Delivery, route: Route, job: Job, fault: Fault) -> None:
        if fault.retry:
            await self._failed(message, route, job, fault.failure, fault.started, fault.exc,
                               fault.reason)
        else:
            await self._dead(message, job, fault.reason, fault.failure, fault.started,
                             fault.exc, spec=route.spec)

    async def _duplicate(self, job: Job, key: str) -> bool:
        """Whether ``key`` already completed. A run that died between recording its key
        and its ``succeeded`` event left the event with the key: record it again (same
        event id, so readers drop the copy when the first did arrive)."""
        assert self.store is not None
        if self.outcomes is None:
            return await self.store.is_completed(key)
        done, outcome = await self.outcomes.completed_outcome(key)
        if done and outcome is not None and self.journal is not None:
            if await self.journal.record(outcome):
                self.outcomes.confirmed(key)
            log.info("job %s on %r: a redelivery of a completed job; its outcome recorded "
                     "again (the run that completed it may have stopped before recording it)",
                     job.job_id, job.queue)
        return done

    async def _mark_completed(self, key: str, outcome: str,
                              recorded: asyncio.Future[bool]) -> None:
        if self.outcomes is not None:
            await self.outcomes.mark_completed(key, outcome, recorded)
        elif self.store is not None:
            await self.store.mark_completed(key)

    async def _run(self, message: Delivery, route: Route,
                   job: Job) -> tuple[float, Any] | Fault:
        """Run the handler; returns its duration and return value on success, else how it
        failed (to settle once the slot is free)."""
        token = self._next = self._next + 1
        entry = Running(job.job_id, job.queue, job.attempt, time.time(), asyncio.current_task(),
                        message=message)
        self.running[token] = entry
        self.observer.on_job_start(job)
        if self.journal is not None:
            self.journal.started(job)
        started = time.monotonic()
        try:
            try:
                if route.spec.timeout is not None:
                    async with asyncio.timeout(route.spec.timeout):
                        value = await route.handler(job)
                else:
                    value = await route.handler(job)
            except asyncio.CancelledError:
                if entry.cancel_reason is None:
                    raise  # shutdown past its deadline: leave it unacked, the broker requeues it
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                entry.settled = True
                return Fault(outcomes.REASON_CANCELLED, Failure("Cancelled", entry.cancel_reason),
                             asyncio.CancelledError(entry.cancel_reason), started, retry=False)
            except TimeoutError as exc:
                entry.settled = True
                failure = Failure("TimeoutError", f"job exceeded its time limit of {route.spec.timeout}s")
                return Fault(outcomes.REASON_TIMEOUT, failure, exc, started, retry=True)
            except NonRetryable as exc:
                entry.settled = True
                return Fault(outcomes.REASON_NON_RETRYABLE, Failure.from_exception(exc), exc,
                             started, retry=False)
            except Exception as exc:  # noqa: BLE001 - the edge around user code: every error is an outcome
                entry.settled = True
                log.info("job %s on %s failed: %s: %s", job.job_id, job.queue, type(exc).__name__, exc)
                return Fault(outcomes.REASON_FAILED, Failure.from_exception(exc), exc, started,
                             retry=True)
            entry.settled = True
            return time.monotonic() - started, value
        finally:
            del self.running[token]

    def _job(self, message: Delivery, spec: QueueSpec, job_id: str, attempt: int,
             payload: Any) -> Job:
        headers = message.headers or {}
        published = headers.get(envelope.H_PUBLISHED_MS)
        return Job(
            queue=spec.name, job_id=job_id, payload=payload, attempt=attempt,
            max_attempts=spec.retry.max_attempts, headers=headers, body=message.body,
            content_type=message.content_type, priority=message.priority,
            idempotency_key=envelope.idempotency_key_of(message.message_id, headers),
            published_ms=published if isinstance(published, int) else None,
            redelivered=bool(message.redelivered),
        )


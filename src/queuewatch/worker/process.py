"""One delivery, start to finish: decode, skip duplicates, run the handler, then settle.

Settling follows the no-loss rule: success -> record the idempotency key -> ack; failure ->
publish a retry or dead-letter copy, wait for its confirm -> ack. If the copy cannot be
confirmed the original is requeued instead, never dropped.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiormq
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from queuewatch import envelope
from queuewatch.idempotency import IdempotencyStore
from queuewatch.topology import QueueSpec
from queuewatch.worker import outcomes
from queuewatch.worker.decode import decode_body
from queuewatch.worker.hooks import DEAD_LETTERED, RETRIED, SUCCEEDED, WorkerObserver
from queuewatch.worker.job import Handler, Job, MalformedPayload, NonRetryable
from queuewatch.worker.outcomes import Failure
from queuewatch.worker.ratelimit import TokenBucket

log = logging.getLogger(__name__)

#: Seconds to wait before requeueing a job whose retry/DLQ copy was not confirmed.
REQUEUE_PAUSE = 1.0


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


@dataclass
class Processor:
    worker_id: str
    delay_levels: int
    semaphore: asyncio.Semaphore
    observer: WorkerObserver
    store: IdempotencyStore | None
    max_payload_bytes: int
    running: dict[int, Running] = field(default_factory=dict)
    counts: Counts = field(default_factory=Counts)
    publish_channel: AbstractChannel | None = None
    open_channel: Callable[[], Awaitable[AbstractChannel]] | None = None
    """Opens a new confirm channel when the publish channel died but the connection lives."""
    accepting: bool = True
    active: set[asyncio.Task[Any]] = field(default_factory=set)
    """Tasks running or settling a job (a graceful shutdown waits for them)."""
    """False once a graceful shutdown began: prefetched jobs no longer start."""
    _next: int = 0

    # -- the pipeline -----------------------------------------------------------------
    async def handle(self, message: AbstractIncomingMessage, route: Route) -> None:
        spec = route.spec
        headers = message.headers or {}
        # A job replayed out of its DLQ starts over: the client replay resets the attempt
        # header, a shovel cannot (it moves messages as they are), so its exchange says so.
        attempt = 1 if envelope.is_shovel_replay(message.exchange) else envelope.attempt_of(headers)
        job_id = message.message_id or f"delivery-{message.delivery_tag}"
        try:
            payload = decode_body(message.body, message.content_type, self.max_payload_bytes)
        except MalformedPayload as exc:
            job = self._job(message, spec, job_id, attempt, None)
            await self._dead(message, job, outcomes.REASON_MALFORMED,
                             Failure("MalformedPayload", str(exc)), 0.0, exc, spec=spec)
            return
        job = self._job(message, spec, job_id, attempt, payload)
        key = job.idempotency_key
        if self.store is not None and key is not None and await self.store.is_completed(key):
            self.counts.duplicates += 1
            self.observer.on_duplicate(spec.name, job_id)
            await _settle(message.ack())
            return
        if route.bucket is not None:
            await route.bucket.acquire()
        task = asyncio.current_task()
        try:
            async with self.semaphore:
                if not self.accepting:
                    return  # shutting down: leave it unacked, the broker requeues it
                if task is not None:
                    self.active.add(task)
                duration = await self._run(message, route, job)
            if duration is not None:
                # Recorded and acked outside the concurrency slot, so the next job starts
                # while the record waits for its group commit.
                if self.store is not None and key is not None:
                    await self.store.mark_completed(key)
                await _settle(message.ack())
                self.counts.succeeded += 1
                self.observer.on_job_end(job, SUCCEEDED, duration, None)
        finally:
            if task is not None:
                self.active.discard(task)

    async def _run(self, message: AbstractIncomingMessage, route: Route, job: Job) -> float | None:
        """Run the handler; returns its duration on success, None when the failure is settled."""
        token = self._next = self._next + 1
        entry = Running(job.job_id, job.queue, job.attempt, time.time(), asyncio.current_task())
        self.running[token] = entry
        self.observer.on_job_start(job)
        started = time.monotonic()
        try:
            try:
                if route.spec.timeout is not None:
                    async with asyncio.timeout(route.spec.timeout):
                        await route.handler(job)
                else:
                    await route.handler(job)
            except asyncio.CancelledError:
                if entry.cancel_reason is None:
                    raise  # shutdown or connection loss: leave unacked, the broker requeues
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                entry.settled = True
                exc = asyncio.CancelledError(entry.cancel_reason)
                await self._dead(message, job, outcomes.REASON_CANCELLED,
                                 Failure("Cancelled", entry.cancel_reason), started, exc,
                                 spec=route.spec)
                return None
            except TimeoutError as exc:
                entry.settled = True
                failure = Failure("TimeoutError", f"job exceeded its time limit of {route.spec.timeout}s")
                await self._failed(message, route, job, failure, started, exc,
                                   outcomes.REASON_TIMEOUT)
                return None
            except NonRetryable as exc:
                entry.settled = True
                await self._dead(message, job, outcomes.REASON_NON_RETRYABLE,
                                 Failure.from_exception(exc), started, exc, spec=route.spec)
                return None
            except Exception as exc:  # noqa: BLE001 - the edge around user code: every error is an outcome
                entry.settled = True
                log.info("job %s on %s failed: %s: %s", job.job_id, job.queue, type(exc).__name__, exc)
                await self._failed(message, route, job, Failure.from_exception(exc), started,
                                   exc, outcomes.REASON_FAILED)
                return None
            entry.settled = True
            return time.monotonic() - started
        finally:
            del self.running[token]

    # -- failures ---------------------------------------------------------------------
    async def _failed(self, message: AbstractIncomingMessage, route: Route, job: Job,
                      failure: Failure, started: float, exc: BaseException, reason: str) -> None:
        self.counts.failed += 1
        if job.attempt >= job.max_attempts:
            await self._dead(message, job, reason, failure, started, exc, counted=True,
                             spec=route.spec)
            return
        delay = route.spec.retry.delay_for(job.attempt, random.random())
        copy = outcomes.retry_copy(message, job.queue, job.attempt, delay, self.delay_levels, failure)
        if await self._publish_then_ack(message, copy):
            self.counts.retried += 1
            self.observer.on_job_end(job, RETRIED, time.monotonic() - started, exc)

    async def _dead(self, message: AbstractIncomingMessage, job: Job, reason: str,
                    failure: Failure, started: float, exc: BaseException | None, *,
                    spec: QueueSpec, counted: bool = False) -> None:
        if not counted and reason != outcomes.REASON_MALFORMED:
            self.counts.failed += 1
        if not spec.dlq:
            # The topology chose no parking lot (dlq = false): the job is dropped, loudly.
            # Publishing to a DLQ that does not exist would come back unroutable and requeue
            # the job forever.
            log.error("dropping job %s of %s after %s (attempt %d, no DLQ configured): %s: %s",
                      job.job_id, job.queue, reason, job.attempt, failure.error_type, failure.message)
            await _settle(message.reject(requeue=False))
            self.counts.dead_lettered += 1
            if not started:
                self.observer.on_job_start(job)
            self.observer.on_job_end(job, DEAD_LETTERED, time.monotonic() - started if started else 0.0, exc)
            return
        copy = outcomes.dead_letter_copy(message, job.queue, job.attempt, reason, failure,
                                         self.worker_id)
        if await self._publish_then_ack(message, copy):
            self.counts.dead_lettered += 1
            if not started:  # a malformed message never ran: count it with zero duration
                self.observer.on_job_start(job)
            duration = time.monotonic() - started if started else 0.0
            self.observer.on_job_end(job, DEAD_LETTERED, duration, exc)

    async def _publish_then_ack(self, message: AbstractIncomingMessage, copy: outcomes.Copy) -> bool:
        """Publish ``copy`` with a confirm, then ack ``message``; requeue it if that fails."""
        try:
            await self._publish(message, copy)
        except (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError, OSError) as exc:
            log.warning("could not publish %s to %s (%s); requeueing the original",
                        message.message_id, copy.routing_key, exc)
            await asyncio.sleep(REQUEUE_PAUSE)  # no hot loop while the cause persists
            await _settle(message.nack(requeue=True))
            return False
        await _settle(message.ack())
        return True

    async def _publish(self, message: AbstractIncomingMessage, copy: outcomes.Copy) -> None:
        channel = self.publish_channel
        if channel is not None and channel.is_closed and self.open_channel is not None:
            channel = self.publish_channel = await self.open_channel()
        if channel is None or channel.is_closed:
            raise aiormq.exceptions.ChannelInvalidStateError("no publish channel")
        props = Basic.Properties(
            content_type=message.content_type, content_encoding=message.content_encoding,
            delivery_mode=2, priority=message.priority, message_id=message.message_id,
            correlation_id=message.correlation_id, timestamp=message.timestamp,
            message_type=message.type, app_id=message.app_id, headers=copy.headers,
        )
        underlay = await channel.get_underlay_channel()
        try:
            result = await underlay.basic_publish(
                message.body, exchange=copy.exchange, routing_key=copy.routing_key,
                properties=props, mandatory=True,
            )
        except aiormq.exceptions.DeliveryError:
            self.observer.on_publish_nack(copy.routing_key)
            raise
        if isinstance(result, DeliveredMessage):
            raise aiormq.exceptions.PublishError(result, None)  # type: ignore[arg-type, unused-ignore]

    def _job(self, message: AbstractIncomingMessage, spec: QueueSpec, job_id: str, attempt: int,
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


async def _settle(op: Any) -> None:
    """Ack/nack; a closed channel means the broker requeues the message anyway."""
    try:
        await op
    except (aiormq.exceptions.AMQPError, RuntimeError, ConnectionError) as exc:
        log.debug("ack/nack skipped: %s", exc)

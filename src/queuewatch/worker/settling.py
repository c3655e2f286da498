"""How a job's delivery is settled when it does not simply succeed: a retry or a dead
letter published with a confirm, its events recorded, then the ack (requeued when the copy
cannot be confirmed); a cancelled job skipped; a unique job's key freed.

:class:`Settling` is the part of :class:`~queuewatch.worker.process.Processor` that does it
(split out of it to keep each module small; it holds no state of its own).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from queuewatch import envelope
from queuewatch.broker.delivery import Delivery
from queuewatch.broker.publish import ConfirmedPublisher, Outcome
from queuewatch.idempotency import IdempotencyStore
from queuewatch.producer.locks import PREFIX as LOCK_PREFIX
from queuewatch.producer.locks import Locks
from queuewatch.topology import QueueSpec
from queuewatch.worker import outcomes
from queuewatch.worker.acks import Acks
from queuewatch.worker.hooks import DEAD_LETTERED, REQUEUED, RETRIED, WorkerObserver
from queuewatch.worker.job import Job
from queuewatch.worker.journal import Journal
from queuewatch.worker.outcomes import Failure
from queuewatch.worker.settle import channel_gone, publish_copy, requeue_later

if TYPE_CHECKING:
    from queuewatch.worker.process import Counts, Route

log = logging.getLogger(__name__)

#: Seconds during which further "ack lost with its channel" lines of one queue are counted
#: instead of logged.
ACK_LOST_QUIET = 10.0


class Settling:
    """The settling half of the processor (see the module docstring)."""

    worker_id: str
    delay_levels: int
    observer: WorkerObserver
    store: IdempotencyStore | None
    counts: Counts
    publisher: ConfirmedPublisher | None
    journal: Journal | None
    locks: Locks | None
    acks: Acks
    _ack_lost_seen: dict[str, tuple[float, int]]

    async def _skip(self, message: Delivery, job: Job, reason: str,
                    whole: bool) -> None:
        """A cancelled job (or a copy replaced by "run now") came up: record, then drop it."""
        log.info("skipping job %s on %r: %s", job.job_id, job.queue, reason)
        if self.journal is not None:
            await self.journal.record(self.journal.skipped(job, reason, whole))
        await self.acks.ack(message)
        if whole:
            await self._release(message)

    async def _release(self, message: Delivery) -> None:
        """The job is finished: free its ``unique_for`` key, if it has one."""
        lock = (message.headers or {}).get(envelope.H_UNIQUE)
        if isinstance(lock, str) and lock.startswith(LOCK_PREFIX) and self.locks is not None:
            await self.locks.release(lock)

    def _ack_lost(self, job: Job, key: str | None) -> None:
        then = ("it is recorded as completed, so the redelivery is skipped as a duplicate"
                if self.store is not None and key is not None else
                "without an idempotency store it will run again")
        # A channel dies under every job it held at once (prefetch 100: 100 jobs): one line
        # per queue per ACK_LOST_QUIET seconds, the rest counted into the next line.
        now = time.monotonic()
        last, hidden = self._ack_lost_seen.get(job.queue, (float("-inf"), 0))
        if now - last < ACK_LOST_QUIET:
            self._ack_lost_seen[job.queue] = (last, hidden + 1)
            log.debug("job %s on %r: ack lost with its channel; %s", job.job_id, job.queue, then)
            return
        self._ack_lost_seen[job.queue] = (now, 0)
        more = f" ({hidden} more jobs of this queue since the last such line)" if hidden else ""
        log.warning("job %s on %r succeeded but its channel was closed meanwhile (see the "
                    "consumer's log line), so the ack could not be sent and the broker "
                    "redelivers it: %s%s; others in the next %gs are counted, not logged",
                    job.job_id, job.queue, then, more, ACK_LOST_QUIET)

    # -- failures ---------------------------------------------------------------------
    async def _failed(self, message: Delivery, route: Route, job: Job,
                      failure: Failure, started: float, exc: BaseException, reason: str) -> None:
        self.counts.failed += 1
        if job.attempt >= job.max_attempts:
            await self._dead(message, job, reason, failure, started, exc, counted=True,
                             spec=route.spec)
            return
        delay = route.spec.retry.delay_for(job.attempt, random.random())
        copy = outcomes.retry_copy(message, job.queue, job.attempt, delay, self.delay_levels, failure)
        events = ([self.journal.failed(job, failure, time.monotonic() - started),
                   self.journal.retry(job, delay)] if self.journal is not None else [])
        moved = await self._publish_then_ack(message, job, copy, events)
        if moved:
            self.counts.retried += 1
        self.observer.on_job_end(job, RETRIED if moved else REQUEUED, time.monotonic() - started, exc)

    async def _dead(self, message: Delivery, job: Job, reason: str,
                    failure: Failure, started: float, exc: BaseException | None, *,
                    spec: QueueSpec, counted: bool = False) -> None:
        if not counted and reason != outcomes.REASON_MALFORMED:
            self.counts.failed += 1
        events: list[str] = []
        if self.journal is not None:
            if started:
                events.append(self.journal.failed(job, failure, time.monotonic() - started))
            events.append(self.journal.dead(job, reason, failure, spec.dlq_name if spec.dlq else None,
                                            cancelled=reason == outcomes.REASON_CANCELLED))
        if not spec.dlq:
            # The topology chose no parking lot (dlq = false): the job is dropped, loudly.
            # Publishing to a DLQ that does not exist would come back unroutable and requeue
            # the job forever.
            log.error("dropping job %s of %s after %s (attempt %d, no DLQ configured): %s: %s",
                      job.job_id, job.queue, reason, job.attempt, failure.error_type, failure.message)
            if self.journal is not None:
                await self.journal.record(*events)
            await self.acks.reject(message, requeue=False)
            await self._release(message)
            self.counts.dead_lettered += 1
            if not started:
                self.observer.on_job_start(job)
            self.observer.on_job_end(job, DEAD_LETTERED, time.monotonic() - started if started else 0.0, exc)
            return
        copy = outcomes.dead_letter_copy(message, job.queue, job.attempt, reason, failure,
                                         self.worker_id)
        moved = await self._publish_then_ack(message, job, copy, events)
        if moved:
            self.counts.dead_lettered += 1
            await self._release(message)
        if not started:  # a malformed message never ran: count it with zero duration
            self.observer.on_job_start(job)
        duration = time.monotonic() - started if started else 0.0
        self.observer.on_job_end(job, DEAD_LETTERED if moved else REQUEUED, duration, exc)

    async def _publish_then_ack(self, message: Delivery, job: Job, copy: outcomes.Copy,
                                events: Sequence[str] = ()) -> bool:
        """Publish ``copy`` with a confirm, record ``events``, then ack ``message``; requeue
        it if the copy cannot be confirmed."""
        if channel_gone(message):
            # The broker took the delivery back when it closed the channel: it redelivers
            # the job and this attempt runs again. A copy now would make two of it.
            log.warning("job %s: not publishing its %s copy: the channel it came on was closed "
                        "while it ran, so the broker redelivers it and the attempt runs again",
                        job.job_id, copy.routing_key)
            return False
        result = await publish_copy(self.publisher, message, copy, job.job_id)
        if result.ok:
            if events and self.journal is not None:
                await self.journal.record(*events)
            await self.acks.ack(message)
            return True
        if result.outcome is Outcome.NACKED:
            self.observer.on_publish_nack(copy.routing_key)
        log.warning("could not publish job %s to %s (%s: %s); requeueing the original",
                    job.job_id, copy.routing_key, result.outcome.value, result.detail)
        await requeue_later(message, self.acks)
        return False

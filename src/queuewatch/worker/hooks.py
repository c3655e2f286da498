"""Extension points: a base class of no-op hooks. Metrics is one observer among others."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from queuewatch.producer.observer import ProducerObserver
from queuewatch.worker.job import Job

if TYPE_CHECKING:
    from queuewatch.telemetry import ConsumerStatus

#: Outcomes a job can end with (the ``outcome`` label of ``queuewatch_jobs_total``).
SUCCEEDED = "succeeded"
RETRIED = "retried"
DEAD_LETTERED = "dead_lettered"
DUPLICATE = "duplicate"
REQUEUED = "requeued"
"""The run's outcome could not be recorded (its retry/DLQ copy was not confirmed, or the
broker took the delivery back when it closed its channel): the job is back in the queue."""
OUTCOMES = (SUCCEEDED, RETRIED, DEAD_LETTERED, DUPLICATE, REQUEUED)


class WorkerObserver(ProducerObserver):
    """Override the hooks you need; every hook must be quick and must not raise."""

    def on_worker_start(self, worker_id: str, queues: Sequence[str]) -> None: ...

    def on_worker_stop(self, worker_id: str) -> None: ...

    def on_connected(self, worker_id: str) -> None: ...

    def on_disconnected(self, worker_id: str, reason: str) -> None: ...

    def on_job_start(self, job: Job) -> None: ...

    def on_job_end(self, job: Job, outcome: str, duration: float, error: BaseException | None) -> None:
        """``outcome`` is one of :data:`OUTCOMES`; ``error`` what the handler raised, if anything."""

    def on_duplicate(self, queue: str, job_id: str) -> None:
        """A job whose idempotency key already completed was acked and skipped."""

    def on_consumer_change(self, worker_id: str, state: ConsumerStatus) -> None:
        """The consumer of ``state.queue`` started or stopped consuming (``state.cause``
        says why not: ``consumer_timeout``, ``cancelled_by_broker``, ...)."""


class Observers(WorkerObserver):
    """Fan a hook out to several observers."""

    def __init__(self, observers: Sequence[WorkerObserver]) -> None:
        self.observers = tuple(observers)

    def on_publish_nack(self, queue: str) -> None:
        for o in self.observers:
            o.on_publish_nack(queue)

    def on_blocked(self, blocked: bool) -> None:
        for o in self.observers:
            o.on_blocked(blocked)

    def on_worker_start(self, worker_id: str, queues: Sequence[str]) -> None:
        for o in self.observers:
            o.on_worker_start(worker_id, queues)

    def on_worker_stop(self, worker_id: str) -> None:
        for o in self.observers:
            o.on_worker_stop(worker_id)

    def on_connected(self, worker_id: str) -> None:
        for o in self.observers:
            o.on_connected(worker_id)

    def on_disconnected(self, worker_id: str, reason: str) -> None:
        for o in self.observers:
            o.on_disconnected(worker_id, reason)

    def on_job_start(self, job: Job) -> None:
        for o in self.observers:
            o.on_job_start(job)

    def on_job_end(self, job: Job, outcome: str, duration: float, error: BaseException | None) -> None:
        for o in self.observers:
            o.on_job_end(job, outcome, duration, error)

    def on_duplicate(self, queue: str, job_id: str) -> None:
        for o in self.observers:
            o.on_duplicate(queue, job_id)

    def on_consumer_change(self, worker_id: str, state: ConsumerStatus) -> None:
        for o in self.observers:
            o.on_consumer_change(worker_id, state)

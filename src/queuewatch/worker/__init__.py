"""The worker runtime: consume job queues, run handlers, retry, dead-letter, report.

Public API: :class:`Worker`, :class:`Job`, :class:`NonRetryable`, :class:`WorkerObserver`
(hooks) and :class:`PrometheusObserver` (metrics).
"""

from queuewatch.worker.hooks import OUTCOMES, WorkerObserver
from queuewatch.worker.job import Handler, Job, MalformedPayload, NonRetryable
from queuewatch.worker.metrics import PrometheusObserver
from queuewatch.worker.runtime import Worker

__all__ = [
    "OUTCOMES", "Handler", "Job", "MalformedPayload", "NonRetryable", "PrometheusObserver",
    "Worker", "WorkerObserver",
]

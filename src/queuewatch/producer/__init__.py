"""Producers: publish jobs with confirms, back-pressure, priorities and delays.

* :class:`AsyncProducer` (aio-pika) for asyncio services,
* :class:`Producer` (pika, blocking) for Flask/Django-style code.

Both take ``publish(queue, payload, *, priority, delay, job_id, idempotency_key, headers,
wait, timeout)`` and return a :class:`Published` once the broker confirmed the job.
"""

from queuewatch.producer._common import DEFAULT_WINDOW, Outgoing, Published, build
from queuewatch.producer.aio import AsyncProducer
from queuewatch.producer.observer import ProducerObserver
from queuewatch.producer.sync import Producer

__all__ = [
    "DEFAULT_WINDOW",
    "AsyncProducer",
    "Outgoing",
    "Producer",
    "ProducerObserver",
    "Published",
    "build",
]

"""Settling a delivery: ack it, or move a copy (retry, dead letter) and then ack it.

The no-loss rule: a copy is published with a confirm (:class:`ConfirmedPublisher`, one
outcome) and only then is the original acked; anything but ``confirmed`` requeues the
original after a pause.

A delivery belongs to the channel it came on. When the broker closed that channel while the
job ran (``consumer_timeout``, a broker-side cancel, a lost link), the broker has already put
the delivery back in the queue, so nothing can be acked or rejected any more: the outcome of
this run is recorded where it can be (the idempotency store, for a success) and the
redelivery decides the rest.
"""

from __future__ import annotations

import asyncio

from queuewatch.broker.delivery import Delivery
from queuewatch.broker.errors import ANY_BROKER_ERROR
from queuewatch.broker.publish import ConfirmedPublisher, Outcome, Properties, PublishResult
from queuewatch.envelope import fits_message_id
from queuewatch.worker.acks import Acks
from queuewatch.worker.outcomes import Copy

#: Seconds to wait before requeueing a job whose retry/DLQ copy was not confirmed.
REQUEUE_PAUSE = 1.0
#: Longest wait for a live link before a copy counts as not published (seconds).
PUBLISH_LINK_WAIT = 10.0


def channel_gone(message: Delivery) -> bool:
    """True when the channel the delivery came on is closed: the broker requeued it, and
    neither an ack nor a nack can reach the broker any more."""
    try:
        return bool(message.channel.is_closed)
    except ANY_BROKER_ERROR:  # aio-pika raises for a closed channel
        return True


def copy_properties(message: Delivery, copy: Copy, job_id: str) -> Properties:
    """The original's properties; a message published without a ``message_id`` gets its
    job id as one, so that the next attempt and the dead letter have the same id (a job id
    too long for the property is found again from the headers or body it came from)."""
    message_id = message.message_id or (job_id if fits_message_id(job_id) else None)
    return Properties(
        content_type=message.content_type, content_encoding=message.content_encoding,
        delivery_mode=2, priority=message.priority, message_id=message_id,
        correlation_id=message.correlation_id, timestamp=message.timestamp,
        message_type=message.type, app_id=message.app_id, headers=copy.headers,
    )


async def publish_copy(publisher: ConfirmedPublisher | None, message: Delivery,
                       copy: Copy, job_id: str) -> PublishResult:
    if publisher is None:
        return PublishResult(Outcome.LINK_LOST, "the worker is not connected")
    return await publisher.publish(
        message.body, exchange=copy.exchange, routing_key=copy.routing_key,
        properties=copy_properties(message, copy, job_id), link_timeout=PUBLISH_LINK_WAIT,
    )


async def requeue_later(message: Delivery, acks: Acks) -> None:
    """Put the original back after :data:`REQUEUE_PAUSE` (no hot loop while a cause persists)."""
    await asyncio.sleep(REQUEUE_PAUSE)
    await acks.nack(message)

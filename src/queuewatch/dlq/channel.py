"""Low-level AMQP plumbing for the DLQ actions (aiormq channels under aio-pika connections).

The hot paths (peek, replay, export) talk to aiormq directly: aio-pika's per-message
objects cost more than the work itself at 100,000 messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiormq
from aio_pika.abc import AbstractConnection
from aiormq.abc import DeliveredMessage

from queuewatch.errors import BrokerError, NotFound

#: AMQP's prefetch count is a 16-bit number; 0 means unlimited.
MAX_PREFETCH = 65_535
#: Stop waiting for more deliveries after this long without one (someone else consumed).
IDLE_TIMEOUT = 2.0


@asynccontextmanager
async def raw_channel(
    connection: AbstractConnection, *, confirms: bool = False
) -> AsyncIterator[Any]:
    """An aiormq channel; closing it requeues every delivery not acked on it."""
    try:
        channel = await connection.channel(publisher_confirms=confirms, on_return_raises=confirms)
        raw = await channel.get_underlay_channel()
    except aiormq.exceptions.AMQPError as exc:
        raise BrokerError(f"cannot open an AMQP channel: {exc}") from exc
    try:
        yield raw
    finally:
        if not channel.is_closed:
            try:
                await channel.close()
            except (aiormq.exceptions.AMQPError, ConnectionError, asyncio.CancelledError):
                pass  # the broker requeues unacked deliveries whichever way the channel ends


async def queue_depth(connection: AbstractConnection, queue: str) -> int:
    """Ready messages in ``queue`` right now (passive declare on a throwaway channel)."""
    async with raw_channel(connection) as raw:
        try:
            ok = await raw.queue_declare(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            raise NotFound(f"queue {queue!r} does not exist in this vhost") from exc
        return int(ok.message_count or 0)


async def exchange_exists(connection: AbstractConnection, exchange: str) -> bool:
    """Whether ``exchange`` exists (publishing to a missing one would close the channel)."""
    if exchange == "":
        return True
    async with raw_channel(connection) as raw:
        try:
            await raw.exchange_declare(exchange, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
        return True


class Inbox:
    """A consumer callback that queues deliveries for an ``async for`` loop."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[DeliveredMessage] = asyncio.Queue()

    async def __call__(self, message: DeliveredMessage) -> None:
        self._queue.put_nowait(message)

    async def get(self, timeout: float) -> DeliveredMessage | None:
        try:
            return self._queue.get_nowait()  # the common case: no task, no timer
        except asyncio.QueueEmpty:
            pass
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None


async def consume(
    raw: Any, queue: str, prefetch: int, *, global_qos: bool = True
) -> tuple[Inbox, str]:
    """Start consuming ``queue`` without auto-ack; returns the inbox and the consumer tag."""
    inbox = Inbox()
    await raw.basic_qos(prefetch_count=prefetch, global_=global_qos)
    try:
        ok = await raw.basic_consume(queue, inbox, no_ack=False)
    except aiormq.exceptions.ChannelNotFoundEntity as exc:
        raise NotFound(f"queue {queue!r} does not exist in this vhost") from exc
    return inbox, str(ok.consumer_tag)


def delivery_tag(message: DeliveredMessage) -> int:
    return int(getattr(message.delivery, "delivery_tag", 0))


def prefetch_for(count: int) -> int:
    return count if 0 < count <= MAX_PREFETCH else 0


async def scan(
    connection: AbstractConnection, queue: str, limit: int | None = None,
    idle_timeout: float = IDLE_TIMEOUT,
) -> AsyncGenerator[tuple[int, DeliveredMessage], None]:
    """Yield ``(position, delivery)`` for the first ``limit`` messages without acking any.

    The deliveries stay unacked until the generator finishes and its channel closes; the
    broker then puts them back where they were (classic queues keep the original
    positions; quorum queues append requeued messages at the tail).
    """
    total = await queue_depth(connection, queue)
    target = total if limit is None else min(total, limit)
    if target <= 0:
        return
    async with raw_channel(connection) as raw:
        inbox, _tag = await consume(raw, queue, prefetch_for(target))
        for position in range(target):
            message = await inbox.get(idle_timeout)
            if message is None:
                return
            yield position, message

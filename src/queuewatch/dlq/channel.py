"""Low-level AMQP plumbing for the DLQ actions (aiormq channels under aio-pika connections).

The hot paths (peek, replay, export) talk to aiormq directly: aio-pika's per-message
objects cost more than the work itself at 100,000 messages. Every request here has a
deadline (:mod:`queuewatch.dlq.watch`), and prefetch is per consumer (``global`` QoS is
refused by quorum queues and streams: RabbitMQ closes the whole connection for it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

from queuewatch.aio import wait_for
from queuewatch.broker import wire
from queuewatch.broker.fieldcodec import sendable_name
from queuewatch.broker.publish import send
from queuewatch.broker.wire import Connection, Delivery
from queuewatch.dlq.watch import (
    CLOSE_TIMEOUT,
    OP_TIMEOUT,
    STALL_TIMEOUT,
    Interrupted,
    Watch,
    bounded,
    link_problem,
)
from queuewatch.errors import NotFound, QueuewatchError

#: AMQP's prefetch count is a 16-bit number; 0 means unlimited.
MAX_PREFETCH = 65_535
#: Stop waiting for more deliveries after this long without one (someone else consumed).
IDLE_TIMEOUT = 2.0
RETURN_WAIT = 5.0
"""After a read: longest wait for the queue to put back what it read (:func:`scan`)."""


@asynccontextmanager
async def raw_channel(
    connection: Connection, *, confirms: bool = False, watch: Watch | None = None,
) -> AsyncIterator[Any]:
    """An aiormq channel; closing it requeues every delivery not acked on it.

    Opening waits at most :data:`OP_TIMEOUT` (:class:`Interrupted` on a dead or silent
    link); closing at most :data:`CLOSE_TIMEOUT` (then it is left to the broker), and not
    at all when ``watch`` knows the link is lost."""
    problem = link_problem(connection)
    if problem is not None:
        raise Interrupted(problem)
    try:
        channel = await bounded(
            connection.channel(publisher_confirms=confirms, on_return_raises=confirms),
            OP_TIMEOUT, "open a channel")
        raw = await channel.get_underlay_channel()
    except (wire.AMQPError, ConnectionError, RuntimeError) as exc:
        raise Interrupted(f"cannot open an AMQP channel: {type(exc).__name__}: {exc}") from exc
    try:
        yield raw
    finally:
        lost = watch is not None and watch.link_lost
        if not channel.is_closed and not lost and link_problem(connection) is None:
            # Waited for at most CLOSE_TIMEOUT, but never cancelled: a close cancelled
            # half-way (channel.close sent, close-ok not yet read; slow when thousands of
            # deliveries go back) frees the channel number while RabbitMQ still closes it,
            # and the next channel opened under that number kills the whole connection
            # ("CHANNEL_ERROR - expected 'channel.open'"). The broker requeues unacked
            # deliveries whichever way the channel ends.
            closing = asyncio.ensure_future(channel.close())
            closing.add_done_callback(_retrieve)
            await asyncio.wait({closing}, timeout=CLOSE_TIMEOUT)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark a background close's outcome as seen (it only matters to the broker)."""
    if not fut.cancelled():
        fut.exception()


async def close_quietly(connection: Connection) -> None:
    """Close a connection, waiting at most :data:`CLOSE_TIMEOUT` (a dead or silent link is
    left behind: the broker requeues what it held when it notices)."""
    try:
        await wait_for(connection.close(), CLOSE_TIMEOUT)
    except (wire.AMQPError, ConnectionError, RuntimeError, TimeoutError):
        pass


async def queue_depth(connection: Connection, queue: str) -> int:
    """Ready messages in ``queue`` right now (passive declare on a throwaway channel)."""
    return (await queue_counts(connection, queue))[0]


async def queue_counts(connection: Connection, queue: str) -> tuple[int, int]:
    """(ready messages, consumers) of ``queue`` right now (passive declare)."""
    why = sendable_name(queue, "queue")
    if why is not None:  # RabbitMQ holds no such queue, and pamqp would raise sending it
        shown = queue if len(queue) <= 60 else queue[:60] + "..."
        raise NotFound(f"queue {shown!r} does not exist in this vhost ({why})")
    async with raw_channel(connection) as raw:
        try:
            ok = await bounded(raw.queue_declare(queue, passive=True), OP_TIMEOUT,
                               f"a passive declare of {queue!r}")
        except wire.ChannelNotFound as exc:
            raise NotFound(f"queue {queue!r} does not exist in this vhost") from exc
        except (wire.AMQPError, ConnectionError) as exc:
            raise Interrupted(f"cannot read the depth of {queue!r}: {type(exc).__name__}: {exc}") from exc
        return int(ok.message_count or 0), int(ok.consumer_count or 0)


async def once_fewer_consumers(connection: Connection, queue: str, than: int = 1,
                               timeout: float = RETURN_WAIT) -> int:
    """Ready messages of ``queue`` once it has fewer than ``than`` consumers (or after
    ``timeout``): what a consumer that just went gave back is counted then (a queue
    requeues what its consumer held as it removes it; a quorum queue in the same command)."""
    deadline = time.monotonic() + timeout
    while True:
        depth, consumers = await queue_counts(connection, queue)
        if consumers < than or time.monotonic() >= deadline:
            return depth
        await asyncio.sleep(0.02)


async def exchange_exists(connection: Connection, exchange: str) -> bool:
    """Whether ``exchange`` exists (publishing to a missing one would close the channel)."""
    if exchange == "":
        return True
    async with raw_channel(connection) as raw:
        try:
            await bounded(raw.exchange_declare(exchange, passive=True), OP_TIMEOUT,
                          f"a passive declare of exchange {exchange!r}")
        except wire.ChannelNotFound:
            return False
        return True


def publish(
    raw: Any, body: bytes, exchange: str, routing_key: str, properties: Any
) -> asyncio.Future[Any]:
    """The republish of the DLQ actions (replay, import): the broker edge's pipelined
    confirmed, mandatory publish (:func:`queuewatch.broker.publish.send`); classify how its
    future ended with :func:`queuewatch.broker.publish.classify_failure`."""
    return send(raw, body, exchange=exchange, routing_key=routing_key, properties=properties)


class Inbox:
    """A consumer callback that queues deliveries for an ``async for`` loop."""

    def __init__(self, watch: Watch | None = None) -> None:
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self._watch = watch
        self.received = 0
        """Deliveries received so far."""

    async def __call__(self, message: Delivery) -> None:
        self._queue.put_nowait(message)
        self.received += 1
        if self._watch is not None:
            self._watch.progress()

    async def get(self, timeout: float) -> Delivery | None:
        try:
            return self._queue.get_nowait()  # the common case: no task, no timer
        except asyncio.QueueEmpty:
            pass
        try:
            return await wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None


async def consume(
    raw: Any, queue: str, prefetch: int, inbox: Inbox | None = None, *,
    on_message: Callable[[Delivery], Awaitable[None]] | None = None,
) -> tuple[Inbox, str]:
    """Start consuming ``queue`` without auto-ack, ``prefetch`` unacked deliveries at most
    for this consumer (0: no limit); returns the inbox and the consumer tag.
    ``on_message``: called with each delivery instead of putting it in the inbox (it
    forwards to an inbox of its own)."""
    inbox = inbox or Inbox()
    try:
        await bounded(raw.basic_qos(prefetch_count=prefetch, global_=False), OP_TIMEOUT, "basic.qos")
        ok = await bounded(raw.basic_consume(queue, on_message or inbox, no_ack=False), OP_TIMEOUT,
                           f"consume {queue!r}")
    except wire.ChannelNotFound as exc:
        raise NotFound(f"queue {queue!r} does not exist in this vhost") from exc
    except (wire.AMQPError, ConnectionError) as exc:
        raise Interrupted(f"cannot consume {queue!r}: {type(exc).__name__}: {exc}") from exc
    return inbox, str(ok.consumer_tag)


async def still_there(connection: Connection, queue: str) -> int:
    """Ready messages of ``queue``, asked on a fresh channel: proves the link answers.

    :class:`Interrupted` when it does not (or the queue is gone)."""
    try:
        return await queue_depth(connection, queue)
    except NotFound as exc:
        raise Interrupted(f"the queue {queue!r} was deleted") from exc


def delivery_tag(message: Delivery) -> int:
    return int(getattr(message.delivery, "delivery_tag", 0))


def prefetch_for(count: int) -> int:
    return count if 0 < count <= MAX_PREFETCH else 0


async def scan(
    connection: Connection, queue: str, limit: int | None = None,
    idle_timeout: float = IDLE_TIMEOUT,
) -> AsyncGenerator[tuple[int, Delivery], None]:
    """Yield ``(position, delivery)`` for the first ``limit`` messages without acking any.

    The deliveries stay unacked until the generator finishes and its channel closes; the
    broker then puts them back where they were (classic queues keep the original
    positions; quorum queues append requeued messages at the tail). It finishes once the
    queue has removed its consumer (at most :data:`RETURN_WAIT` after the close), so that
    what it read is back: a count or a shovel right after would otherwise miss those the
    broker had not put back yet (seen on a quorum DLQ: a replay right after a read of all
    40 found none).
    """
    total, others = await queue_counts(connection, queue)
    target = total if limit is None else min(total, limit)
    if target <= 0:
        return
    watch = Watch(connection)
    watch.consuming(queue)
    clean = False
    """Ended without an error (the reader stopped early counts): wait for the returns."""
    try:
        async with raw_channel(connection) as raw:
            watch.attach(raw, "reading")
            inbox, _tag = await consume(raw, queue, prefetch_for(target), Inbox(watch))
            position = 0
            quiet_since: float | None = None
            while position < target:
                if watch.check() is not None:
                    raise Interrupted(f"reading {queue!r} stopped after {position} of {target}: "
                                      f"{watch.reason}")
                message = await inbox.get(idle_timeout)
                if message is None:
                    # Nothing for a while: the link died, or someone else took the rest.
                    try:
                        ready = await still_there(connection, queue)
                    except Interrupted as exc:
                        raise Interrupted(f"reading {queue!r} stopped after {position} of "
                                          f"{target}: {exc}") from exc
                    if ready == 0 and watch.check() is None:
                        watch.closing()
                        clean = True
                        return
                    now = time.monotonic()
                    quiet_since = quiet_since or now
                    if now - quiet_since > STALL_TIMEOUT:
                        raise Interrupted(f"reading {queue!r} stopped after {position} of {target}: "
                                          f"nothing delivered for {STALL_TIMEOUT:g}s although "
                                          f"{ready} are ready")
                    continue
                quiet_since = None
                yield position, message
                position += 1
            watch.closing()
            clean = True
    except GeneratorExit:
        clean = True
        raise
    finally:
        if clean and not watch.link_lost:
            with suppress(QueuewatchError):  # a failed look ends the wait
                await once_fewer_consumers(connection, queue, than=others + 1)

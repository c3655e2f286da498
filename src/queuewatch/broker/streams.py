"""Streams that were just declared: wait until they can take a publish.

RabbitMQ 3.10 starts a new stream's writer asynchronously after ``queue.declare`` returns.
A ``basic.publish`` that reaches the stream before its writer is a *connection* error
(``RESOURCE_ERROR - Stream not found``): the broker closes the whole connection, with every
consumer and channel on it (seen on the worker's first start in a new vhost). A consumer on
a stream that is not ready usually only loses its channel, so readiness is probed that way,
on a channel of its own, before anything publishes to a stream this process declared.

Usually: a consume that reaches a stream before its members run (``stream_not_found``), or
while its coordinator has no majority (``coordinator_unavailable``), can crash the channel
process instead, and the broker then closes the connection too (seen in this project's tests
on 3.10.8). So stream traffic — publishes, readers, this probe — goes over a connection of
its own wherever a connection also carries job consumers or heartbeats (the worker's
``stream_link``, the producer's ``events_link``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from queuewatch.broker.errors import LINK_OR_AMQP_ERRORS, close_channel
from queuewatch.broker.types import Channel

log = logging.getLogger(__name__)

#: Longest wait for a stream to become ready (seconds).
READY_TIMEOUT = 10.0
_PROBE_PAUSE = 0.1

OpenChannel = Callable[[], Awaitable[Channel]]


async def declare_stream(open_channel: OpenChannel, name: str, arguments: dict[str, Any]) -> None:
    """Declare stream ``name`` (idempotent), then wait until it takes publishes."""
    channel = await open_channel()
    try:
        await channel.declare_queue(name, durable=True, arguments=arguments)
    finally:
        await close_channel(channel)
    await wait_ready(open_channel, name)


async def wait_ready(open_channel: OpenChannel, name: str, timeout: float = READY_TIMEOUT) -> bool:
    """Return once a consumer can attach to stream ``name`` (its members run); False after
    ``timeout`` (the caller goes on; a missing stream is the caller's business)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            channel = await open_channel()
        except LINK_OR_AMQP_ERRORS as exc:
            log.debug("probing stream %r: %s", name, exc)
            return False
        try:
            await channel.set_qos(prefetch_count=1)
            queue = await channel.get_queue(name, ensure=False)
            tag = await queue.consume(_ignore, arguments={"x-stream-offset": "next"})
            await queue.cancel(tag)
            return True
        except LINK_OR_AMQP_ERRORS as exc:
            if loop.time() >= deadline:
                log.debug("stream %r not ready after %gs: %s", name, timeout, exc)
                return False
        finally:
            await close_channel(channel)
        await asyncio.sleep(_PROBE_PAUSE)


async def _ignore(message: Any) -> None:
    return None

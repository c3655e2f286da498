"""Reading a DLQ without changing it: pages, finding by job id or text.

Every read consumes without acking and then closes its channel, so the broker puts each
message back in its original position (classic queues). While a read is in progress the
messages it holds are invisible to other consumers of the DLQ (DLQs normally have none).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass

from queuewatch.broker.wire import Connection, Delivery
from queuewatch.dlq.channel import queue_depth, scan
from queuewatch.dlq.decode import properties_dict
from queuewatch.dlq.filters import DeadLetterFilter
from queuewatch.dlq.model import DeadLetter, make_dead_letter

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)``: called from the core now and then; never prints."""


@dataclass(frozen=True)
class Page:
    """One page of a DLQ: ``items`` at positions ``offset``.. of ``total`` ready messages."""

    queue: str
    offset: int
    limit: int
    total: int
    items: tuple[DeadLetter, ...]

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.items) < self.total


def to_dead_letter(position: int, message: Delivery) -> DeadLetter:
    props = message.header.properties
    return make_dead_letter(
        position=position,
        body=bytes(message.body),
        properties=properties_dict(props),
        headers=props.headers,
        redelivered=bool(getattr(message.delivery, "redelivered", False)),
        routing_key=str(getattr(message.delivery, "routing_key", "") or ""),
    )


async def peek(
    connection: Connection, queue: str, offset: int = 0, limit: int = 50
) -> Page:
    """Dead letters at positions ``offset`` .. ``offset + limit - 1``, left in place."""
    if offset < 0 or limit < 0:
        raise ValueError("offset and limit must not be negative")
    total = await queue_depth(connection, queue)
    items: list[DeadLetter] = []
    async with aclosing(scan(connection, queue, offset + limit)) as stream:
        async for position, message in stream:
            if position >= offset:
                items.append(to_dead_letter(position, message))
    return Page(queue=queue, offset=offset, limit=limit, total=total, items=tuple(items))


async def iterate(
    connection: Connection, queue: str, limit: int | None = None,
    progress: ProgressFn | None = None,
) -> AsyncGenerator[tuple[DeadLetter, Delivery], None]:
    """Every dead letter (up to ``limit``), head first; all of them stay in the queue."""
    total = await queue_depth(connection, queue)
    total = total if limit is None else min(total, limit)
    async with aclosing(scan(connection, queue, limit)) as stream:
        async for position, message in stream:
            yield to_dead_letter(position, message), message
            if progress is not None and (position + 1) % 1000 == 0:
                progress(position + 1, total)
    if progress is not None:
        progress(total, total)


async def find(
    connection: Connection, queue: str, flt: DeadLetterFilter,
    limit: int | None = None, max_results: int = 1000,
) -> list[DeadLetter]:
    """Dead letters matching ``flt`` (scanning at most ``limit`` messages), left in place."""
    found: list[DeadLetter] = []
    async with aclosing(iterate(connection, queue, limit)) as stream:
        async for dl, _message in stream:
            if flt.matches(dl):
                found.append(dl)
                if len(found) >= max_results:
                    break
    return found

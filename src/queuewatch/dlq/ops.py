"""Delete selected dead letters and purge a DLQ."""

from __future__ import annotations

from contextlib import AsyncExitStack

from queuewatch.broker import wire
from queuewatch.broker.wire import Connection
from queuewatch.dlq.channel import (
    IDLE_TIMEOUT,
    Inbox,
    delivery_tag,
    queue_depth,
    raw_channel,
    still_there,
)
from queuewatch.dlq.filters import DeadLetterFilter
from queuewatch.dlq.peek import to_dead_letter
from queuewatch.dlq.readers import HOLD_PER_CHANNEL, Readers
from queuewatch.dlq.watch import OP_TIMEOUT, Watch, bounded
from queuewatch.errors import BrokerError, NotFound


async def delete(
    connection: Connection, queue: str, flt: DeadLetterFilter,
    idle_timeout: float = IDLE_TIMEOUT, quorum: bool = False,
) -> list[str | None]:
    """Remove the dead letters ``flt`` selects (ack them); the rest stay in place.
    ``quorum``: the DLQ is a quorum queue (see :class:`~queuewatch.dlq.readers.Readers`).

    Returns the job ids removed (None for messages without one). Every wait is bounded: a
    broken link ends it with :class:`~queuewatch.dlq.watch.Interrupted` (what was not acked
    stays in the DLQ)."""
    if flt.is_empty:
        raise ValueError("delete needs a filter (job ids, ...); use purge to empty the queue")
    total = await queue_depth(connection, queue)
    removed: list[str | None] = []
    if total == 0:
        return removed
    watch = Watch(connection, probe=lambda: still_there(connection, queue))
    watch.consuming(queue)
    async with AsyncExitStack() as stack:
        # Those it keeps are held unacked, on several channels (see dlq.readers)
        readers = Readers(connection, stack, watch, Inbox(watch), HOLD_PER_CHANNEL,
                          starved_only=quorum)
        try:
            async with watch.guard():
                await readers.start(queue, total)
                for position in range(total):
                    message = await readers.inbox.get(idle_timeout)
                    if message is None:
                        break
                    dl = to_dead_letter(position, message)
                    rc = readers.of(message)
                    tag = delivery_tag(message)
                    if flt.matches(dl):
                        removed.append(dl.job_id)
                        rc.acker.done(tag)
                    else:
                        rc.hold(tag)
                    await readers.keep_flowing()
                await readers.flush_and_close()
        except BaseException:
            readers.abort()  # acks not sent yet are dropped: those dead letters stay
            raise
    return removed


async def purge(connection: Connection, queue: str) -> int:
    """Remove every ready message of ``queue``; returns how many."""
    async with raw_channel(connection) as raw:
        try:
            ok = await bounded(raw.queue_purge(queue), OP_TIMEOUT, f"purge {queue!r}")
        except wire.ChannelNotFound as exc:
            raise NotFound(f"queue {queue!r} does not exist in this vhost") from exc
        except wire.AMQPError as exc:
            raise BrokerError(f"purging {queue!r} failed: {exc}") from exc
        return int(ok.message_count or 0)

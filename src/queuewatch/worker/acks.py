"""Acks of one channel's deliveries, coalesced: one ``basic.ack multiple=True`` for every
job that finished in the same turn of the event loop, instead of one frame each.

A busy worker finishes its jobs in bursts (their events are confirmed together, then their
acks go out together), so most bursts are a run of consecutive delivery tags. The ack of a
job costs a frame, a future, a queue put and a socket write; coalescing pays those once per
burst.

**Safety.** ``multiple=True`` acks *every* unacked delivery of the channel up to the tag,
so it may only cover tags this process settled itself. A cursor walks the channel's tags
from 1 (AMQP numbers a channel's deliveries 1, 2, 3 ...): it passes a tag only once that
tag is resolved here — to be acked now, or already settled (acked alone, nacked or
rejected, the frame written). A tag never resolved (a job still running, a delivery left
unacked for the broker to requeue, a delivery this code never saw) stops the cursor, and
every done tag above it is acked alone, at once: no ack waits for a slow job. Those are
remembered (so that the cursor can pass them later) up to :data:`MAX_REMEMBERED`; a channel
past that acks every job alone from then on.

Frames of one channel leave in order from one task, so a single ack is never overtaken by
a ``multiple`` one that covers it (the broker would close the channel: unknown tag).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any
from weakref import WeakKeyDictionary

from queuewatch.broker.delivery import Delivery
from queuewatch.broker.errors import ANY_BROKER_ERROR

log = logging.getLogger(__name__)

#: Longest an ack/nack may take to be written (seconds): every wait has a deadline. The
#: broker requeues what could not be settled when the channel closes.
SETTLE_TIMEOUT = 10.0
#: Tags settled past a cursor that does not move (a job running for hours among quick
#: ones) are remembered up to this many; past it the channel acks every job alone from then
#: on, and remembers nothing.
MAX_REMEMBERED = 10_000

_ACK = True
"""Resolved state of a tag: to be acked by the next ``multiple`` frame."""
_SETTLED = False
"""Resolved state of a tag: settled already (acked alone, nacked, rejected)."""


class ChannelAcks:
    """The acks of one (aiormq) channel's deliveries (see the module docstring)."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self._resolved: dict[int, bool] = {}
        self._cursor = 1
        """Every tag below the cursor is resolved, and acked or settled."""
        self._multiple = True
        """False once :data:`MAX_REMEMBERED` was passed: single acks only."""
        self._batch: list[int] = []
        self._written: asyncio.Future[bool] | None = None
        self._task: asyncio.Task[None] | None = None
        self.frames = 0
        """``basic.ack`` frames written (for tests and benchmarks)."""

    def ack(self, tag: int) -> asyncio.Future[bool]:
        """Ack ``tag`` with the others of this turn of the loop; the future says whether
        the frame was written (False: the channel is gone, the broker requeues it)."""
        loop = asyncio.get_running_loop()
        self._batch.append(tag)
        if self._written is None:
            self._written = loop.create_future()
        written = self._written
        if self._task is None:
            self._task = loop.create_task(self._run(), name="acks")
        return written

    def settled(self, tag: int) -> None:
        """``tag`` was settled another way, its frame written (a nack, a reject)."""
        if self._multiple:
            self._resolved[tag] = _SETTLED

    def plan(self, batch: list[int]) -> list[tuple[int, bool]]:
        """The frames ``(tag, multiple)`` that ack ``batch`` (advances the cursor)."""
        if not self._multiple:
            return [(tag, False) for tag in batch]
        resolved = self._resolved
        for tag in batch:
            resolved[tag] = _ACK
        upto = 0
        cursor = self._cursor
        while cursor in resolved:
            if resolved.pop(cursor):
                upto = cursor
            cursor += 1
        self._cursor = cursor
        frames = [(upto, True)] if upto else []
        for tag in batch:
            if tag > cursor:  # (the cursor's own tag is unresolved: never in a batch)
                resolved[tag] = _SETTLED  # acked alone now; the cursor skips it later
                frames.append((tag, False))
        if len(resolved) > MAX_REMEMBERED:
            # (all settled past the cursor: forgetting them only costs the multiple acks)
            self._multiple = False
            resolved.clear()
        return frames

    async def _run(self) -> None:
        written: asyncio.Future[bool] | None = None
        try:
            while self._batch:
                batch, self._batch = self._batch, []
                written, self._written = self._written, None
                ok = await self._write(self.plan(batch))
                if written is not None and not written.done():
                    written.set_result(ok)
                written = None
        finally:
            # (cancelled: the worker is stopping; what was not written stays unacked)
            self._task = None
            self._batch = []
            for fut in (written, self._written):
                if fut is not None and not fut.done():
                    fut.set_result(False)
            self._written = None

    async def _write(self, frames: list[tuple[int, bool]]) -> bool:
        ok = await settle(self._send(frames), "acks")
        if ok:
            self.frames += len(frames)
        return ok

    async def _send(self, frames: list[tuple[int, bool]]) -> None:
        last = len(frames) - 1
        for i, (tag, multiple) in enumerate(frames):
            # Written in order; waiting for the last one's drain covers them all.
            await self.channel.basic_ack(tag, multiple=multiple, wait=i == last)


async def settle(op: Awaitable[Any], what: str = "a nack/reject") -> bool:
    """Await the writing of ``what``; False when it could not be sent within
    :data:`SETTLE_TIMEOUT` (the broker then requeues the delivery when its channel
    closes)."""
    try:
        # (asyncio.timeout, not wait_for: no task of its own per frame)
        async with asyncio.timeout(SETTLE_TIMEOUT):
            await op
    except TimeoutError:
        log.warning("%s could not be written within %gs; the broker redelivers the job(s)",
                    what, SETTLE_TIMEOUT)
        return False
    except ANY_BROKER_ERROR as exc:
        log.debug("%s not sent: %s", what, exc)
        return False
    return True


class Acks:
    """Every ack, nack and reject of the worker's deliveries, per channel (a channel's
    state goes with the channel)."""

    def __init__(self) -> None:
        self._channels: WeakKeyDictionary[Any, ChannelAcks] = WeakKeyDictionary()

    def _of(self, message: Delivery) -> tuple[ChannelAcks, int] | None:
        """The acks of ``message``'s channel and its tag; None when there is nothing to
        settle (a no_ack delivery) or its channel is closed."""
        tag = message.delivery_tag
        if tag is None:
            return None
        try:
            channel = message.channel
        except ANY_BROKER_ERROR:
            return None
        acks = self._channels.get(channel)
        if acks is None:
            acks = self._channels[channel] = ChannelAcks(channel)
        return acks, tag

    async def ack(self, message: Delivery) -> bool:
        """Ack ``message`` (coalesced); False when it could not be written."""
        if message.delivery_tag is None:
            return True  # (no_ack delivery: nothing to settle)
        found = self._of(message)
        return found is not None and await found[0].ack(found[1])

    async def nack(self, message: Delivery) -> bool:
        """Put ``message`` back in its queue (False: not written)."""
        return self._settled(message, await settle(message.nack(requeue=True)))

    async def reject(self, message: Delivery, requeue: bool) -> bool:
        """Reject ``message`` (False: not written)."""
        return self._settled(message, await settle(message.reject(requeue=requeue)))

    def _settled(self, message: Delivery, written: bool) -> bool:
        # Only once its frame is written may a later ``multiple`` ack pass the tag.
        found = self._of(message) if written else None
        if found is not None:
            found[0].settled(found[1])
        return written

    @property
    def frames(self) -> int:
        return sum(a.frames for a in list(self._channels.values()))

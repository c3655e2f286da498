"""Acknowledging consumed deliveries exactly once, as few frames as possible.

A delivery is *resolved* either ``done`` (its republish was confirmed: ack it) or ``held``
(it stays unacked and goes back to its place when the channel closes). Acks use
``multiple=True`` up to the highest contiguous done tag while nothing is held; once a
delivery is held, ``multiple`` would ack it too, so later acks are single.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from queuewatch.broker import wire


class Acker:
    def __init__(self, send: Callable[[int, bool, int], None]) -> None:
        """``send(delivery_tag, multiple, count)`` issues one ``basic.ack`` that settles
        ``count`` deliveries."""
        self._send = send
        self._resolved: dict[int, bool] = {}
        self._cursor = 1
        """Every tag below the cursor is resolved (and acked if done)."""
        self._held_any = False
        self.acked = 0
        self.held = 0

    def done(self, tag: int) -> None:
        self._resolved[tag] = True
        self._advance()

    def hold(self, tag: int) -> None:
        self._resolved[tag] = False
        self.held += 1
        self._advance()

    def _advance(self) -> None:
        multiple_upto = covered = 0
        while self._cursor in self._resolved:
            tag = self._cursor
            ok = self._resolved.pop(tag)
            self._cursor += 1
            if not ok:
                if multiple_upto:
                    self._send(multiple_upto, True, covered)
                    multiple_upto = covered = 0
                self._held_any = True
                continue
            self.acked += 1
            if self._held_any:
                self._send(tag, False, 1)
            else:
                multiple_upto = tag
                covered += 1
        if multiple_upto:
            self._send(multiple_upto, True, covered)

    @property
    def done_waiting(self) -> int:
        """Done deliveries not acked yet because an earlier one is still unresolved."""
        return sum(1 for ok in self._resolved.values() if ok)

    @property
    def pending(self) -> int:
        """Resolved tags still waiting for an earlier tag to resolve."""
        return len(self._resolved)


#: Deliveries acked between two checkpoints (see :class:`AckWriter`).
CHECKPOINT_EVERY = 500


class AckWriter:
    """Sends acks in order from one task (separate tasks could overtake each other, and an
    out-of-order ``multiple`` ack makes the broker close the channel: unknown delivery tag).
    Consecutive ``multiple`` acks are coalesced into the highest one.

    An ack has no answer, so after every :data:`CHECKPOINT_EVERY` acked deliveries a
    ``checkpoint()`` request goes out on the same channel: its answer proves that every ack
    written before it was processed (a channel's frames are handled in order). After a
    broken link, only the acks after the last answered checkpoint may have been lost."""

    def __init__(
        self, channel: Any, checkpoint: Callable[[], Awaitable[object]] | None = None
    ) -> None:
        self._channel = channel
        self._checkpoint = checkpoint
        self._ops: deque[tuple[int, bool, int]] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self.sent = 0
        """Deliveries settled by the acks written so far (handed to the connection: one
        written just before the link broke may still be lost on the way)."""
        self.proven = 0
        """Deliveries whose ack RabbitMQ surely processed (an answered checkpoint)."""
        self._checked = 0
        self._checks: set[asyncio.Future[None]] = set()
        self._task = asyncio.ensure_future(self._run())

    def __call__(self, tag: int, multiple: bool, count: int = 1) -> None:
        self._ops.append((tag, multiple, count))
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._ops:
                tag, multiple, count = self._ops.popleft()
                while multiple and self._ops and self._ops[0][1]:
                    tag, multiple, more = self._ops.popleft()
                    count += more
                await self._channel.basic_ack(tag, multiple=multiple, wait=False)
                self.sent += count
                if self._checkpoint is not None and self.sent - self._checked >= CHECKPOINT_EVERY:
                    self._checked = self.sent
                    check = asyncio.ensure_future(self._check(self.sent))
                    self._checks.add(check)
                    check.add_done_callback(self._checks.discard)
            if self._closing:
                return

    async def _check(self, upto: int) -> None:
        assert self._checkpoint is not None
        try:
            await self._checkpoint()
        except (wire.AMQPError, ConnectionError, RuntimeError, TimeoutError):
            return  # it proves nothing; the link's fate is reported by the action
        self.proven = max(self.proven, upto)

    def abort(self) -> None:
        """Stop without sending what is queued (those deliveries go back to the queue).

        A checkpoint in flight is left to end by itself (its answer, or the channel's end):
        aiormq answers a cancelled request by closing the channel, and a stale reply could
        then be taken for the answer to the next request."""
        self._task.cancel()

    async def flush(self) -> None:
        """Send every queued ack, then stop (raises the channel's error if it broke)."""
        self._closing = True
        self._wake.set()
        await self._task

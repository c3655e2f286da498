"""The channels a replay reads the DLQ on, and why there are several.

A dead letter the replay leaves out (the filter does not select it, or it is refused) stays
unacked on the channel it came on, so that it goes back to its place when the channel
closes. But RabbitMQ's channel finds the delivery an ack names by walking its unacked
deliveries from the oldest (``rabbit_channel:collect_acks``): behind thousands of held dead
letters every ack costs thousands of steps, and a replay where half match spent most of
its time in the broker (20,000 dead letters: 27.8 s of broker CPU against 6.0 s when all
match; reading on a new channel every 1,000 held: 9.7 s, every 250: 8.3 s). So once the
channel being read holds :data:`HOLD_PER_CHANNEL` dead letters, the replay reads on a new
one; the old one keeps what it holds (and acks what it has in
flight) until the replay ends and every channel closes.

Each channel has its own :class:`~queuewatch.dlq.acker.Acker` (delivery tags are per
channel) and its own proof of acks (:meth:`ReadChannel.unproven`).

A quorum DLQ (``starved_only=True``) moves to a new consumer only once the current one is
starved: every delivery it may hold unacked (its prefetch) is a held one. A quorum queue
returns a delivery that reaches the channel after its consumer was cancelled (RabbitMQ
3.10's ``rabbit_fifo_client``), and a returned message is delivered again after whatever the
next consumer had been sent already: a replay that moved on earlier sent neighbours out of
DLQ order (seen in CI, on one channel and on several). A starved consumer has nothing in
flight: the queue holds at most ``prefetch`` unacked for it, and all of them are here.
(``dlq delete`` reads a quorum DLQ so too: each such return also counts as a delivery
against a delivery limit.)
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from queuewatch.broker.wire import Connection, Delivery
from queuewatch.dlq.acker import Acker, AckWriter
from queuewatch.dlq.channel import MAX_PREFETCH, Inbox, consume, raw_channel
from queuewatch.dlq.watch import Watch

HOLD_PER_CHANNEL = 250
"""Held dead letters on one channel before the replay reads on a new one (at least; more
when the DLQ is so long that :data:`MAX_CHANNELS` would not do)."""
MAX_CHANNELS = 512
"""Most DLQ channels one replay opens (RabbitMQ allows 2,047 per connection by default),
and never more than a quarter of the connection's ``channel_max``."""


class ReadChannel:
    """One channel the DLQ is read on: its consumer, its acks, what it holds."""

    def __init__(self, raw: Any, prefetch: int) -> None:
        self.raw = raw
        self.prefetch = prefetch
        self.ack_writer = AckWriter(raw, self._checkpoint)
        self.acker = Acker(self.ack_writer)
        self.consumer_tag = ""
        self.consumers = 0
        """Consumers started on this channel (each may hold ``prefetch`` unacked)."""
        self.received = 0
        """Deliveries that arrived on this channel."""
        self.held_by_consumer = 0
        """Held since the current consumer started (they count against its prefetch)."""

    async def _checkpoint(self) -> None:
        """A request whose answer proves the acks before it arrived: ``basic.qos`` (per
        consumer: it only applies to consumers started later, with the same value). Never
        cancelled nor timed out (see :meth:`AckWriter.abort`): it ends with its answer or
        with the channel."""
        await self.raw.basic_qos(prefetch_count=self.prefetch, global_=False)

    async def consume(self, queue: str, on_message: Callable[[Delivery], Awaitable[None]]) -> None:
        _inbox, self.consumer_tag = await consume(self.raw, queue, self.prefetch,
                                                  on_message=on_message)
        self.consumers += 1
        self.held_by_consumer = 0

    def hold(self, tag: int) -> None:
        """Leave delivery ``tag`` unacked until the channel closes (``acker.held`` counts)."""
        self.acker.hold(tag)
        self.held_by_consumer += 1

    def unproven(self) -> int:
        """Acks written whose arrival nothing proves: those after the last answered
        checkpoint (see :class:`AckWriter`), or, tighter when the consumer is busy, beyond
        ``received - prefetch x consumers`` (a consumer is sent a delivery only while it
        holds fewer than ``prefetch`` unacked, so that many acks were processed)."""
        proven = self.ack_writer.proven
        if self.prefetch:
            proven = max(proven, self.received - self.prefetch * self.consumers)
        return max(self.ack_writer.sent - proven, 0)


class Readers:
    """The DLQ channels of one replay (see the module doc); all close with ``stack``."""

    def __init__(self, connection: Connection, stack: AsyncExitStack, watch: Watch,
                 inbox: Inbox, window: int, starved_only: bool = False) -> None:
        self.connection, self.stack, self.watch, self.inbox = connection, stack, watch, inbox
        self.window = max(window, 1)
        self.starved_only = starved_only
        self.queue = ""
        self.prefetch = 0
        self.hold_limit = HOLD_PER_CHANNEL
        self.max_channels = MAX_CHANNELS
        self.channels: dict[int, ReadChannel] = {}
        self.current: ReadChannel | None = None

    async def start(self, queue: str, target: int) -> None:
        """Consume ``queue`` to read ``target`` deliveries: 3 windows per consumer."""
        prefetch = min(target, 3 * self.window)
        self.queue, self.prefetch = queue, 0 if prefetch > MAX_PREFETCH else prefetch
        await self._open()
        assert self.current is not None
        tune = getattr(getattr(self.current.raw, "connection", None), "connection_tune", None)
        channel_max = int(getattr(tune, "channel_max", 0) or 0)  # 0: no limit
        if channel_max > 0:
            self.max_channels = max(1, min(MAX_CHANNELS, channel_max // 4))
        self.hold_limit = max(HOLD_PER_CHANNEL, math.ceil(target / self.max_channels))

    async def _open(self) -> None:
        raw = await self.stack.enter_async_context(raw_channel(self.connection, watch=self.watch))
        self.watch.attach(raw, "DLQ")
        rc = ReadChannel(raw, self.prefetch)
        self.channels[raw.number] = rc
        await rc.consume(self.queue, self._arrived_on(rc))
        self.current = rc

    def of(self, message: Delivery) -> ReadChannel:
        """The channel ``message`` arrived on."""
        return self.channels[message.channel.number]  # type: ignore[union-attr]

    async def keep_flowing(self) -> None:
        """Before held deliveries starve the consumer (they count against its prefetch),
        consume again: on a new channel once the current one holds :attr:`hold_limit`,
        else on the same one. With ``starved_only``, only once they have starved it (see
        the module doc). Prefetch is per consumer: quorum queues and streams refuse a
        channel-wide (global) one."""
        rc = self.current
        assert rc is not None
        if not self.prefetch or rc.held_by_consumer < (
                self.prefetch if self.starved_only else self.window):
            return
        await rc.raw.basic_cancel(rc.consumer_tag)
        if rc.acker.held >= self.hold_limit and len(self.channels) < self.max_channels:
            await self._open()
        else:
            await rc.consume(self.queue, self._arrived_on(rc))

    def _arrived_on(self, rc: ReadChannel) -> Callable[[Delivery], Awaitable[None]]:
        async def arrived(message: Delivery) -> None:
            rc.received += 1
            await self.inbox(message)
        return arrived

    def abort(self) -> None:
        for rc in self.channels.values():
            rc.ack_writer.abort()

    async def flush_and_close(self) -> None:
        """Send every ack owed on every channel, then close them all: each close-ok proves
        the acks before it were processed (held dead letters go back to their places). The
        newest first: its consumer would otherwise be sent what the older ones give back,
        and give it back again (a quorum queue counts each as a delivery)."""
        for rc in self.channels.values():
            await rc.ack_writer.flush()
        self.watch.closing()
        for rc in reversed(self.channels.values()):
            await rc.raw.close()

    @property
    def unsent(self) -> int:
        """Deliveries done (confirmed) whose ack was never written."""
        return sum(rc.acker.acked + rc.acker.done_waiting - rc.ack_writer.sent
                   for rc in self.channels.values())

    def unproven(self) -> int:
        return sum(rc.unproven() for rc in self.channels.values())

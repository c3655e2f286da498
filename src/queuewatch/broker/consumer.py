"""A consumer that the link keeps alive: :class:`Subscription`.

Each subscription has a channel of its own, so a broker-side close of one (a
``consumer_timeout`` on a long job, a queue deleted under it) leaves the others alone. When
the broker cancels it or closes its channel while the connection lives, it subscribes again
on a new channel with backoff, as soon as the queue exists again; when the link is lost, the
link restores it after the reconnect. Its state says at every moment whether it consumes,
since when, and why not.

The callback gets each delivery as an aio-pika ``IncomingMessage``. An ``async def``
callback runs in the channel's task for that delivery, which the channel cancels when it
closes; a plain function is called in that task and returns at once, so work it starts in
a task of its own (as the worker does) runs to its end even when the broker closes the
channel under it (``consumer_timeout``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from aio_pika.abc import AbstractChannel, AbstractQueue
from aio_pika.message import IncomingMessage
from aiormq.abc import DeliveredMessage

from queuewatch.aio import end_task, wait_for
from queuewatch.broker.errors import (
    ANY_BROKER_ERROR,
    LINK_OR_AMQP_ERRORS,
    ChannelNotFound,
    close_channel,
    queue_down_text,
)
from queuewatch.broker.policy import ReconnectPolicy
from queuewatch.telemetry import ConsumerStatus

if TYPE_CHECKING:
    from queuewatch.broker.link import BrokerLink

log = logging.getLogger(__name__)

#: Resubscribing after a broker-side cancel backs off to at most this (seconds), so a queue
#: that comes back is consumed again within a few seconds.
RESUBSCRIBE_POLICY = ReconnectPolicy(initial=0.25, factor=2.0, cap=3.0)

#: Seconds a resumed consumer keeps its old channel open for acks of jobs still running.
OLD_CHANNEL_GRACE = 3600.0

Wrap = Callable[[DeliveredMessage, bool], Any]
"""Makes the callback's message of aiormq's delivery and the ``no_ack`` flag."""

Callback = Callable[[Any], Awaitable[None] | None]
"""Called with each delivery (an aio-pika ``IncomingMessage``); see the module docstring."""

#: Why a subscription does not consume (``ConsumerStatus.cause``: the same value the
#: worker's heartbeat carries, so the state needs no copy on its way to the monitor).
Cause = Literal[
    "starting", "link_down", "consumer_timeout", "cancelled_by_broker", "queue_missing",
    "queue_down", "channel_closed", "stopped", "paused",
]


def classify_close(exc: BaseException | None) -> tuple[Cause, str]:
    """What a broker-side channel close means for a consumer."""
    text = str(exc) if exc is not None else "channel closed"
    low = text.lower()
    if "acknowledgement" in low and "timed out" in low:
        return "consumer_timeout", text
    if isinstance(exc, ChannelNotFound):
        return ("queue_down" if queue_down_text(exc) else "queue_missing"), text
    return "channel_closed", text


#: The reason of a consumer whose link is down (the link reconnects, then restores it).
NO_LINK = "no connection to RabbitMQ"


class _Superseded(Exception):
    """A subscription was lost again before it was made (see ``_subscribe_once``)."""


class Subscription:
    """One queue consumed through a :class:`~queuewatch.broker.link.BrokerLink`."""

    def __init__(
        self, link: BrokerLink, queue: str, callback: Callback, *,
        prefetch: int, no_ack: bool,
        declare: Callable[[AbstractChannel], Awaitable[AbstractQueue]] | None,
        on_change: Callable[[Subscription], None] | None,
        arguments: Callable[[], dict[str, Any]] | None = None,
        wrap: Wrap = IncomingMessage,
    ) -> None:
        self.link = link
        self.queue = queue
        self.callback = callback
        self.prefetch = prefetch
        self.no_ack = no_ack
        self.declare = declare
        self.on_change = on_change
        self.wrap = wrap
        """Makes the callback's message of aiormq's delivery (aio-pika's ``IncomingMessage``;
        the worker's is the lighter :class:`~queuewatch.broker.delivery.Delivery`)."""
        self.arguments = arguments
        """Called on every (re)subscribe for the consume arguments (a stream reader resumes
        from the offset after the last one it saw: ``x-stream-offset``)."""
        self.state = ConsumerStatus(queue, False, time.time(), "starting", "not subscribed yet")
        self.subscribes = 0
        """How many times it (re)subscribed."""
        self.channel: AbstractChannel | None = None
        self._tag: str | None = None
        self._generation = 0
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._backoff = RESUBSCRIBE_POLICY.backoff()

    @property
    def live(self) -> bool:
        return self.state.live

    # -- state changes -----------------------------------------------------------------
    def _set(self, live: bool, cause: Cause | None = None, reason: str | None = None) -> None:
        if live == self.state.live and cause == self.state.cause:
            return
        self.state = ConsumerStatus(self.queue, live, time.time(), cause, reason)
        if not live and cause not in ("starting", "stopped", "link_down"):
            # An owner that watches the state (on_change) says it to the user in its own
            # words (what to do); then this line is only for debugging.
            log.log(logging.INFO if self.on_change is not None else logging.WARNING,
                    "consumer of %r stopped: %s", self.queue, reason)
        if self.on_change is not None:
            self.on_change(self)

    def link_down(self) -> None:
        """Called by the link when the connection is gone (the channel went with it), and
        while it cannot connect (from start-up on: not "starting" then, but why)."""
        self._generation += 1
        self.channel = None
        if not self._stopped:
            self._set(False, "link_down", NO_LINK)

    def restart_soon(self) -> None:
        """(Re)subscribe in the background until it works, the link drops, or stop()."""
        if self._stopped or (self._task is not None and not self._task.done()):
            return
        self._task = asyncio.create_task(self._resubscribe(), name=f"consume {self.queue}")

    def _lost(self, cause: Cause, reason: str, generation: int) -> None:
        if generation != self._generation or self._stopped:
            return  # an old channel's late news
        self._generation += 1
        self._set(False, cause, reason)
        if self.link.alive:
            self.restart_soon()

    # -- subscribing -------------------------------------------------------------------
    async def _resubscribe(self) -> None:
        pause = False
        while not self._stopped and self.link.alive:
            if pause:
                await asyncio.sleep(self._backoff.next_delay())
            pause = True
            connects = self.link.connects
            try:
                await self._subscribe_once()
            except _Superseded:
                continue  # (its state says why; the next try is after the backoff)
            except ChannelNotFound as exc:
                cause, reason = classify_close(exc)
                self._set(False, cause, f"queue {self.queue!r}: {reason}")
                continue
            except LINK_OR_AMQP_ERRORS as exc:
                if not self.link.alive or self.link.connects != connects:
                    # The link was lost under this attempt: that is why it failed, not the
                    # channel. Said as link_down (the link's own news may have come first,
                    # and must not be overwritten); once the link is back, the next try is
                    # at once (while it is down, the link restarts this after its reconnect).
                    if not self.link.alive:
                        self._set(False, "link_down", NO_LINK)
                    pause = False
                    continue
                self._set(False, "channel_closed", f"subscribing to {self.queue!r} failed: {exc}")
                continue
            self._backoff.reset()
            return

    async def _subscribe_once(self) -> None:
        await self._close_channel()
        channel = await self.link.channel(timeout=self.link.connect_timeout)
        generation = self._generation
        self.channel = channel
        try:
            if self.prefetch:
                await channel.set_qos(prefetch_count=self.prefetch)
            if self.declare is not None:
                queue = await self.declare(channel)
            else:
                queue = await channel.get_queue(self.queue, ensure=True)
            underlay = await channel.get_underlay_channel()

            def on_cancel(_frame: Any, gen: int = generation) -> None:
                self._lost("cancelled_by_broker",
                           f"the broker cancelled the consumer of {self.queue!r} (queue deleted, "
                           "or its node went down)", gen)

            def on_close(_ch: Any, exc: BaseException | None = None, gen: int = generation) -> None:
                if not self.link.alive:
                    return  # the link's loss is reported by the link
                cause, reason = classify_close(exc)
                self._lost(cause, reason, gen)

            underlay.on_consumer_cancel_callbacks.add(on_cancel)
            channel.close_callbacks.add(on_close)
            self._tag = await self._consume(underlay, queue.name)
        except BaseException:
            await self._close_channel()
            raise
        if generation != self._generation:
            # The broker cancelled the new consumer (or closed its channel) before this
            # coroutine resumed: aiormq's reader can handle a basic.cancel that came in the
            # same read as the consume-ok. _lost() has said why; never claim live now.
            raise _Superseded
        self.subscribes += 1
        self._set(True)
        if self.subscribes > 1:
            log.warning("consuming %r again", self.queue)

    async def _consume(self, underlay: Any, queue: str) -> str:
        """basic.consume straight on aiormq: one task per delivery (aiormq's), not two."""
        callback, no_ack, wrap = self.callback, self.no_ack, self.wrap

        def deliver(message: DeliveredMessage) -> Awaitable[None] | None:
            return callback(wrap(message, no_ack))

        arguments = self.arguments() if self.arguments is not None else None
        ok = await underlay.basic_consume(queue, deliver, no_ack=no_ack, arguments=arguments)
        return str(ok.consumer_tag)

    async def _close_channel(self) -> None:
        channel, self.channel = self.channel, None
        await close_channel(channel)

    # -- stopping ----------------------------------------------------------------------
    async def cancel(self, cause: Cause = "stopped", reason: str = "stopped") -> None:
        """Stop receiving new deliveries (basic.cancel) but keep the channel, so deliveries
        already received can still be acked. Never raises for a dead link."""
        self._stopped = True
        self._generation += 1
        task, self._task = self._task, None
        await end_task(task)
        channel, tag = self.channel, self._tag
        if channel is not None and tag is not None and not channel.is_closed and self.link.alive:
            try:
                underlay = await channel.get_underlay_channel()
                await wait_for(underlay.basic_cancel(tag), 2.0)
            except ANY_BROKER_ERROR as exc:
                log.debug("cancel consumer of %r: %s", self.queue, exc)
        self._set(False, cause, reason)

    def resume(self, keep_old_for: float = OLD_CHANNEL_GRACE) -> None:
        """Consume again after :meth:`cancel` (a paused queue resumed). The old channel is
        left open ``keep_old_for`` seconds for the deliveries still being worked on (their
        acks go on it), then closed (the broker requeues what is still unacked on it)."""
        if not self._stopped:
            return
        self._stopped = False
        old, self.channel = self.channel, None
        if old is not None and not old.is_closed:
            asyncio.get_running_loop().call_later(
                keep_old_for, lambda: asyncio.ensure_future(close_channel(old)))
        if self.link.alive:
            self.restart_soon()

    async def stop(self, *, close_channel: bool = True) -> None:
        """Stop for good: close the channel, which ends the consumer (the broker requeues
        what is unacked on it). No ``basic.cancel`` first: on a silent link it would cost
        its own timeout for nothing (a worker has to exit within its grace).
        ``close_channel=False``: the caller closes the whole connection next."""
        self._stopped = True
        self._generation += 1
        task, self._task = self._task, None
        await end_task(task)
        if close_channel:
            await self._close_channel()
        else:
            self.channel = None
        self._set(False, "stopped", "stopped")

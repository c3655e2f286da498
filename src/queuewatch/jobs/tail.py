"""Reading the job events stream into the index, live: :class:`EventTail`.

One consumer of the stream (through the broker link, so it is restored after any fault,
resuming at the offset after the last message it saw) feeds the :class:`JobIndex` in
batches and tells listeners what changed: result waiters, the live HTTP stream.

"Have I read everything recorded so far?" has no answer in AMQP (a stream reports no tail
offset), so :meth:`EventTail.sync` publishes a marker event and waits until it comes back
through the consumer: everything confirmed before the marker was written before it. Calls
that overlap share one marker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from queuewatch.aio import wait_for
from queuewatch.broker.consumer import Subscription
from queuewatch.broker.errors import LINK_OR_AMQP_ERRORS, close_channel
from queuewatch.broker.link import BrokerLink
from queuewatch.broker.types import IncomingMessage
from queuewatch.config import Settings
from queuewatch.events import model as ev
from queuewatch.events.model import Event, Source, decode_batch
from queuewatch.events.recorder import EventRecorder, declare_events_stream
from queuewatch.jobs.index import JobIndex

log = logging.getLogger(__name__)

#: Stream messages the broker may send ahead (a stream consumer must set a prefetch).
PREFETCH = 1000
#: A flush this big means the reader is behind: the next one waits CATCH_UP_GATHER s so
#: that more messages share its transaction.
CATCH_UP_SIZE = 1000
CATCH_UP_GATHER = 0.05
#: Events applied to the index in one transaction at most.
APPLY_BATCH = 20_000
#: Seconds the start waits for the last message this index read to come back from the stream:
#: none means the stream now ends before it (it was deleted and declared again).
STILL_THERE_WAIT = 5.0

Listener = Callable[[list[Event]], None]


class EventTail:
    """Keeps ``index`` up to date with the stream of ``settings.events_stream``."""

    def __init__(self, link: BrokerLink, settings: Settings, index: JobIndex,
                 recorder: EventRecorder) -> None:
        self.link = link
        self.settings = settings
        self.index = index
        self.recorder = recorder
        self.listeners: list[Listener] = []
        self._next: int | None = index.next_offset
        self._buffer: list[Event] = []
        self._buffer_next: int | None = None
        self._flush_scheduled = False
        self._markers: dict[str, asyncio.Future[None]] = {}
        self._source = Source("reader")
        self.subscription: Subscription | None = None
        self._unacked: IncomingMessage | None = None
        self._catching_up = False
        self.applied = 0
        """Events applied to the index so far (a caught-up reader waits on progress)."""
        self._acks: set[asyncio.Future[None]] = set()
        self._new_life = False
        """The stream went away: the next message starts a new stream (offsets from 0)."""

    async def start(self) -> None:
        await declare_events_stream(lambda: self.link.channel(timeout=30.0), self.settings)
        if self._next and not await self._still_there(self._next - 1):
            # A stream offset past the end is never delivered (RabbitMQ waits until the stream
            # gets there): this index would see nothing new for as long.
            log.warning("the job events stream %r ends before the offset this index read up to "
                        "(%d): it was declared again; reading it from its start",
                        self.settings.events_stream, self._next)
            self._next = None
            self._new_life = True
        self.subscription = self.link.subscribe(
            self.settings.events_stream, self._on_message, prefetch=PREFETCH,
            arguments=self._arguments, on_change=self._on_change)

    async def _still_there(self, offset: int) -> bool:
        """Does the stream hold a message at ``offset`` (or after it)? A consumer from there
        gets one at once when it does."""
        arrived = asyncio.get_running_loop().create_future()

        async def on_message(message: IncomingMessage) -> None:
            if not arrived.done():
                arrived.set_result(None)

        try:
            channel = await self.link.channel(timeout=30.0)
        except LINK_OR_AMQP_ERRORS:
            return True  # (the subscription reports a link that is down)
        try:
            await channel.set_qos(prefetch_count=1)
            queue = await channel.get_queue(self.settings.events_stream, ensure=False)
            await queue.consume(on_message, arguments={"x-stream-offset": offset})
            await wait_for(arrived, STILL_THERE_WAIT)
            return True
        except TimeoutError:
            return False
        except LINK_OR_AMQP_ERRORS as exc:
            log.debug("probing the end of %r: %s", self.settings.events_stream, exc)
            return True
        finally:
            await close_channel(channel)

    def _arguments(self) -> dict[str, Any]:
        return {"x-stream-offset": self._next if self._next is not None else "first"}

    def _on_change(self, sub: Subscription) -> None:
        if sub.state.cause in ("cancelled_by_broker", "queue_missing"):
            # The stream was deleted (and may be declared again, empty, by any recorder) or
            # its node went away: read it again from its first offset. Events already in the
            # index are recognised by their ids; the offsets of a new stream start at 0.
            if self._next is not None:
                log.warning("the job events stream %r went away (%s); reading it again from "
                            "its start", self.settings.events_stream, sub.state.reason)
            self._next = None
            self._new_life = True

    async def stop(self) -> None:
        if self.subscription is not None:
            await self.subscription.stop()
        self._flush()

    # -- deliveries --------------------------------------------------------------------
    def _on_message(self, message: IncomingMessage) -> None:
        offset = (message.headers or {}).get("x-stream-offset")
        if not isinstance(offset, int):
            offset = (self._next or 0)
        events = list(decode_batch(message.body, offset))
        if self._new_life or (self._next is not None and offset < self._next):
            if not self._new_life and not self._starts_over(events):
                self._unacked = message
                return  # a message seen before a resubscribe: already in the index
            self._flush()  # (what came before keeps its positions)
            self.index.new_life(offset)
            self._new_life = False
        self._unacked = message
        self._next = offset + 1
        self._buffer.extend(events)
        self._buffer_next = offset + 1
        if len(self._buffer) >= APPLY_BATCH:
            self._flush()
        elif not self._flush_scheduled:  # apply what arrived together in one transaction
            self._flush_scheduled = True
            if self._catching_up:  # big batches arrive: gather more per transaction
                asyncio.get_running_loop().call_later(CATCH_UP_GATHER, self._flush)
            else:
                asyncio.get_running_loop().call_soon(self._flush)

    def _starts_over(self, events: list[Event]) -> bool:
        """A message before the offset to read from is one seen before (a resubscribe starts
        at its chunk), unless the stream was declared again while this index was away: then
        the message holds this reader's own marker, or events the index never saw."""
        if any(e.event_id in self._markers for e in events):
            return True
        real = [e.event_id for e in events if e.kind != ev.SYNC]
        return bool(real) and not self.index.holds_any(real)

    def _flush(self) -> None:
        self._flush_scheduled = False
        last, self._unacked = self._unacked, None
        if last is not None:  # the stream's credit: one multiple ack per flush
            self._acks.add(task := asyncio.ensure_future(_ack(last)))
            task.add_done_callback(self._acks.discard)
        if self._buffer_next is None:
            return
        events, self._buffer = self._buffer, []
        nxt, self._buffer_next = self._buffer_next, None
        self.index.apply(events, nxt)
        self.applied += len(events)
        self._catching_up = len(events) >= CATCH_UP_SIZE
        for e in events:
            if e.kind == ev.SYNC:
                fut = self._markers.pop(e.event_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(None)
        real = [e for e in events if e.kind != ev.SYNC]
        if real:
            for listener in list(self.listeners):
                try:
                    listener(real)
                except Exception:
                    log.exception("a job events listener failed")

    # -- read-your-writes --------------------------------------------------------------
    async def sync(self, timeout: float = 10.0) -> None:
        """Return once every event confirmed before this call is in the index: a marker of
        its own goes through the stream (markers of calls at the same moment leave in one
        batch). Raises TimeoutError when it is not confirmed within ``timeout``, or when the
        reader makes no progress for ``timeout`` (a reader catching up with a long stream
        waits as long as events keep coming)."""
        marker = Event(ev.SYNC, "", "", 0, self._source)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._markers[marker.event_id] = fut
        try:
            async with asyncio.timeout(timeout):
                await self.recorder.record(marker)
            while True:  # a reader far behind (a new host) keeps waiting while it progresses
                seen = self.applied
                try:
                    await wait_for(asyncio.shield(fut), timeout)
                    return
                except TimeoutError:
                    if self.applied == seen:
                        raise
        finally:
            self._markers.pop(marker.event_id, None)


async def _ack(message: IncomingMessage) -> None:
    try:
        await message.ack(multiple=True)
    except LINK_OR_AMQP_ERRORS as exc:
        log.debug("ack on the events stream: %s", exc)  # the channel went: resubscribed anyway

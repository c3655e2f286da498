"""The one confirmed, mandatory publish, and the one classification of how it ended.

Every hop that moves a job — the producer, the worker's retry/dead-letter copy, DLQ replay
and import — publishes through :class:`ConfirmedPublisher` (or, for pika, classifies with
:func:`classify_pika_error`) and gets one :class:`Outcome`:

- ``confirmed``: the broker took responsibility for the message;
- ``nacked``: the broker nacked it — the queue is at its cap (``x-overflow:
  reject-publish``), or a quorum queue could not take it;
- ``refused``: the broker closed the channel over it (a ``user_id`` that is not ours, a
  message over the size limit, ...): sending it again will not help;
- ``unroutable``: no queue matched (``mandatory`` return), or the exchange does not exist;
- ``queue_down``: the queue exists but its node is down (or it has no quorum);
- ``link_lost``: the link broke, or no confirm came within the deadline: the message may or
  may not have arrived, so the caller re-sends (at-least-once) or keeps its source.

Return/nack answers that could also mean "queue down" are checked with a passive declare of
the target queue on a throwaway channel (the slow path only; a confirm costs nothing extra).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiormq
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from queuewatch.aio import wait_for
from queuewatch.broker.errors import (
    LINK_ERRORS,
    LINK_OR_AMQP_ERRORS,
    ChannelNotFound,
    LinkLost,
    close_channel,
    lost_unless_cancelled,
    queue_down_text,
    raise_if_cancelled,
)
from queuewatch.broker.fieldcodec import ENCODE_ERRORS
from queuewatch.broker.link import BrokerLink, connection_alive, is_blocked

#: Longest wait for one confirm before the publish counts as ``link_lost`` (seconds).
CONFIRM_TIMEOUT = 30.0
#: Shortest wait for one confirm a caller's deadline may leave it (seconds): a confirm
#: takes a round trip and, for a persistent message, a disk write.
MIN_CONFIRM_WAIT = 2.0
#: While a resource alarm blocks the link (confirms held back), a confirm wait past its
#: deadline is looked at again this often (seconds).
BLOCKED_RECHECK = 1.0
#: Longest wait for the passive declare that tells "queue down" from a lost link (seconds).
QUEUE_CHECK_WAIT = 5.0

Properties = Basic.Properties
"""AMQP message properties (pamqp's), re-exported so callers need no AMQP library."""


class Outcome(enum.Enum):
    CONFIRMED = "confirmed"
    NACKED = "nacked"
    REFUSED = "refused"
    UNROUTABLE = "unroutable"
    QUEUE_DOWN = "queue_down"
    LINK_LOST = "link_lost"


@dataclass(frozen=True)
class PublishResult:
    outcome: Outcome
    detail: str = ""
    sent: bool = True
    """False when the message never left this process (its channel was already closed):
    a ``link_lost`` that is certainly not a duplicate-to-be."""

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.CONFIRMED


CONFIRMED = PublishResult(Outcome.CONFIRMED)


def send(raw: Any, body: bytes, *, exchange: str, routing_key: str,
         properties: Properties) -> asyncio.Future[Any]:
    """The pipelined form of the one publish, for the bulk paths (DLQ replay and import,
    thousands in flight): a ``mandatory`` publish on the confirm channel ``raw``
    (aiormq), started now; the future resolves with the confirm. Classify how it ended with
    :func:`classify_failure`."""
    fut: asyncio.Future[Any] = asyncio.ensure_future(raw.basic_publish(
        body, exchange=exchange, routing_key=routing_key, properties=properties,
        mandatory=True, wait=False))
    return fut


def classify_failure(exc: BaseException | None) -> PublishResult:
    """How a publish ended, from its exception alone (None: confirmed). The ``queue_down``
    diagnosis needs a round trip: :class:`ConfirmedPublisher` adds it."""
    if exc is None:
        return CONFIRMED
    if isinstance(exc, aiormq.exceptions.PublishError):
        return PublishResult(Outcome.UNROUTABLE, "matched no queue")
    if isinstance(exc, aiormq.exceptions.DeliveryError):
        return PublishResult(Outcome.NACKED, f"the broker refused the message (nack): {exc}")
    if isinstance(exc, aiormq.exceptions.ChannelInvalidStateError):
        return PublishResult(Outcome.LINK_LOST, f"not sent: the channel was closed ({exc})", sent=False)
    if isinstance(exc, ChannelNotFound):
        return PublishResult(Outcome.UNROUTABLE, f"the exchange does not exist ({exc})")
    if isinstance(exc, aiormq.exceptions.AMQPChannelError):
        return PublishResult(Outcome.REFUSED, f"the broker closed the channel: {exc}")
    if isinstance(exc, ENCODE_ERRORS):
        # The AMQP library could not put it on the wire (a name or value it cannot encode):
        # nothing was sent and the channel is fine; sending it again will not help.
        return PublishResult(Outcome.REFUSED, f"cannot be sent as AMQP: {exc}", sent=False)
    return PublishResult(Outcome.LINK_LOST, f"{type(exc).__name__}: {exc}")


class OneConnection:
    """A plain connection seen as a link that never reconnects (one-shot commands)."""

    def __init__(self, connection: AbstractConnection) -> None:
        self.connection = connection

    @property
    def alive(self) -> bool:
        return connection_alive(self.connection)

    @property
    def blocked(self) -> bool:
        return self.alive and is_blocked(self.connection)

    async def channel(self, *, confirms: bool = False, timeout: float = 30.0) -> AbstractChannel:
        if not self.alive:
            raise LinkLost("the connection to RabbitMQ is closed")
        try:
            return await wait_for(
                self.connection.channel(publisher_confirms=confirms, on_return_raises=False), timeout)
        except LINK_ERRORS as exc:
            raise LinkLost(f"opening a channel failed: {exc}") from exc
        except asyncio.CancelledError as exc:
            raise lost_unless_cancelled(exc, "opening a channel") from exc


class _Due:
    """Ends an ``asyncio.timeout(None)`` at ``when`` (event-loop time), later while
    ``blocked()`` says so (looked at again every :data:`BLOCKED_RECHECK` s)."""

    __slots__ = ("blocked", "clock", "handle", "loop")

    def __init__(self, clock: asyncio.Timeout, loop: asyncio.AbstractEventLoop, when: float,
                 blocked: Callable[[], bool]) -> None:
        self.clock, self.loop, self.blocked = clock, loop, blocked
        self.handle = loop.call_at(when, self._due)

    def _due(self) -> None:
        if self.blocked():
            self.handle = self.loop.call_later(BLOCKED_RECHECK, self._due)
        else:
            self.clock.reschedule(self.loop.time())

    def cancel(self) -> None:
        self.handle.cancel()


class ConfirmedPublisher:
    """Publishes on a confirm channel of ``link`` (a :class:`BrokerLink`, or a plain
    connection for one-shot commands), opened on first use and again after it closed. Many
    publishes may be in flight at once (call :meth:`publish` from many tasks)."""

    def __init__(
        self, link: BrokerLink | AbstractConnection, *, confirm_timeout: float = CONFIRM_TIMEOUT
    ) -> None:
        self.link: BrokerLink | OneConnection = (
            link if isinstance(link, BrokerLink) else OneConnection(link))
        self.confirm_timeout = confirm_timeout
        self._channel: AbstractChannel | None = None
        self._raw_channel: Any = None
        self._lock = asyncio.Lock()

    async def _raw(self, timeout: float) -> Any:
        raw = self._raw_channel
        if raw is not None and not raw.is_closed:
            return raw  # the hot path: no await, no lookups
        async with self._lock:
            channel = self._channel
            if channel is None or channel.is_closed or not self.link.alive:
                channel = self._channel = await self.link.channel(confirms=True, timeout=timeout)
            self._raw_channel = await channel.get_underlay_channel()
        return self._raw_channel

    async def publish(
        self, body: bytes, *, exchange: str, routing_key: str, properties: Properties,
        queue: str | None = None, timeout: float | None = None, link_timeout: float | None = None,
        deadline: float | None = None,
    ) -> PublishResult:
        """Publish with ``mandatory`` and wait for the confirm (at most ``timeout``).

        ``queue``: the queue the message is meant for, to tell "queue down" from
        "unroutable" when it comes back (defaults to ``routing_key`` on the default
        exchange). ``link_timeout``: how long to wait for a live link first. ``deadline``
        (event-loop time): when the caller gives up; no confirm by then (``MIN_CONFIRM_WAIT``
        at least) is ``link_lost``, and the "queue down?" check after it is cut short too."""
        wait = self.confirm_timeout if timeout is None else timeout
        if deadline is not None:
            left = deadline - asyncio.get_running_loop().time()
            wait = min(wait, max(left, MIN_CONFIRM_WAIT))
            link_timeout = max(min(wait if link_timeout is None else link_timeout, left), 0.0)
        try:
            raw = await self._raw(wait if link_timeout is None else link_timeout)
        except LINK_ERRORS as exc:
            return PublishResult(Outcome.LINK_LOST, str(exc))
        except asyncio.CancelledError as exc:
            return PublishResult(Outcome.LINK_LOST, str(lost_unless_cancelled(exc, "publishing")))
        target = queue if queue is not None else (routing_key if exchange == "" else None)
        try:
            publishing = raw.basic_publish(
                body, exchange=exchange, routing_key=routing_key, properties=properties,
                mandatory=True, timeout=wait if deadline is None else None)
            answer = await (publishing if deadline is None
                            else self._confirmed_within(publishing, wait))
        except TimeoutError:
            self._forget_channel()  # a confirm may still come on it; never trust it again
            check = QUEUE_CHECK_WAIT
            if deadline is not None:  # a silent link would take all of it
                check = min(check, max(deadline - asyncio.get_running_loop().time(), 1.0))
            down = await self.queue_down(target, check)
            if down:
                return PublishResult(Outcome.QUEUE_DOWN, down)
            return PublishResult(Outcome.LINK_LOST, f"no confirm within {wait:.3g}s")
        except asyncio.CancelledError as exc:  # aiormq dropped the connection mid-wait
            self._forget_channel()
            return PublishResult(Outcome.LINK_LOST, str(lost_unless_cancelled(exc, "publishing")))
        except LINK_OR_AMQP_ERRORS as exc:
            result = classify_failure(exc)
            if isinstance(exc, aiormq.exceptions.AMQPChannelError):
                self._forget_channel()  # the broker closed it
            if isinstance(exc, aiormq.exceptions.PublishError):  # returned: maybe the queue is down
                return await self._returned(exchange, routing_key, target)
            if result.outcome is Outcome.NACKED:
                return await self._nacked(target, exc)
            return result
        if isinstance(answer, DeliveredMessage):  # returned (without on_return_raises)
            return await self._returned(exchange, routing_key, target)
        return CONFIRMED

    async def _confirmed_within(self, publishing: Awaitable[Any], wait: float) -> Any:
        """``publishing``'s answer, or TimeoutError once ``wait`` s have passed and the link is
        not blocked: a resource alarm holds confirms back until it clears, and a publish held
        so has not failed (the broker has it; sent again, it would arrive twice)."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(None) as clock:
            due = _Due(clock, loop, loop.time() + wait, lambda: self.link.blocked)
            try:
                return await publishing
            finally:
                due.cancel()

    async def _returned(self, exchange: str, routing_key: str, target: str | None) -> PublishResult:
        down = await self.queue_down(target)
        if down:
            return PublishResult(Outcome.QUEUE_DOWN, down)
        return PublishResult(
            Outcome.UNROUTABLE,
            f"exchange {exchange or '(default)'!r} with routing key {routing_key!r} matched no queue")

    async def _nacked(self, target: str | None, exc: BaseException) -> PublishResult:
        down = await self.queue_down(target)
        if down:
            return PublishResult(Outcome.QUEUE_DOWN, down)
        return PublishResult(Outcome.NACKED, f"the broker refused the message (nack): {exc}")

    async def queue_down(self, queue: str | None, wait: float = QUEUE_CHECK_WAIT) -> str | None:
        """Why ``queue`` cannot take messages because its node is down, else None (also when
        the broker does not answer within ``wait`` s)."""
        if not queue or not self.link.alive:
            return None
        loop = asyncio.get_running_loop()
        until = loop.time() + wait
        try:
            channel = await self.link.channel(timeout=wait)
        except LINK_ERRORS:
            return None
        try:
            await wait_for(channel.declare_queue(queue, passive=True), max(until - loop.time(), 0.1))
        except ChannelNotFound as exc:
            if queue_down_text(exc):
                return f"queue {queue!r} is down (its node is unavailable): {exc}"
            return None
        except LINK_OR_AMQP_ERRORS:
            return None
        except asyncio.CancelledError:
            raise_if_cancelled()  # else aiormq dropped the connection: not "down"
            return None
        finally:
            await close_channel(channel)
        return None

    def _forget_channel(self) -> None:
        self._channel = self._raw_channel = None

    async def close(self) -> None:
        self._raw_channel = None
        channel, self._channel = self._channel, None
        await close_channel(channel)


def classify_pika_error(exc: BaseException) -> PublishResult:
    """The same outcomes for the blocking (pika) producer."""
    import pika.exceptions as pe

    if isinstance(exc, pe.UnroutableError):
        return PublishResult(Outcome.UNROUTABLE, "matched no queue")
    if isinstance(exc, pe.NackError):
        return PublishResult(Outcome.NACKED, "the broker refused the message (nack)")
    if isinstance(exc, pe.ChannelClosedByBroker):
        if exc.reply_code == 404:
            if queue_down_text(exc):
                return PublishResult(Outcome.QUEUE_DOWN, str(exc))
            return PublishResult(Outcome.UNROUTABLE, str(exc))
        return PublishResult(Outcome.REFUSED, f"the broker closed the channel: {exc}")
    return PublishResult(Outcome.LINK_LOST, f"{type(exc).__name__}: {exc}")

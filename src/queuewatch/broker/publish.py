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
    queue_down_text,
)
from queuewatch.broker.fieldcodec import ENCODE_ERRORS
from queuewatch.broker.link import BrokerLink, connection_alive

#: Longest wait for one confirm before the publish counts as ``link_lost`` (seconds).
CONFIRM_TIMEOUT = 30.0

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

    async def channel(self, *, confirms: bool = False, timeout: float = 30.0) -> AbstractChannel:
        if not self.alive:
            raise LinkLost("the connection to RabbitMQ is closed")
        try:
            return await wait_for(
                self.connection.channel(publisher_confirms=confirms, on_return_raises=False), timeout)
        except LINK_ERRORS as exc:
            raise LinkLost(f"opening a channel failed: {exc}") from exc


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
    ) -> PublishResult:
        """Publish with ``mandatory`` and wait for the confirm (at most ``timeout``).

        ``queue``: the queue the message is meant for, to tell "queue down" from
        "unroutable" when it comes back (defaults to ``routing_key`` on the default
        exchange). ``link_timeout``: how long to wait for a live link first."""
        wait = self.confirm_timeout if timeout is None else timeout
        try:
            raw = await self._raw(wait if link_timeout is None else link_timeout)
        except LINK_ERRORS as exc:
            return PublishResult(Outcome.LINK_LOST, str(exc))
        target = queue if queue is not None else (routing_key if exchange == "" else None)
        try:
            answer = await raw.basic_publish(
                body, exchange=exchange, routing_key=routing_key, properties=properties,
                mandatory=True, timeout=wait)
        except TimeoutError:
            self._forget_channel()  # a confirm may still come on it; never trust it again
            down = await self.queue_down(target)
            if down:
                return PublishResult(Outcome.QUEUE_DOWN, down)
            return PublishResult(Outcome.LINK_LOST, f"no confirm within {wait:g}s")
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

    async def queue_down(self, queue: str | None) -> str | None:
        """Why ``queue`` cannot take messages because its node is down, else None."""
        if not queue or not self.link.alive:
            return None
        try:
            channel = await self.link.channel(timeout=5.0)
        except LINK_ERRORS:
            return None
        try:
            await wait_for(channel.declare_queue(queue, passive=True), 5.0)
        except ChannelNotFound as exc:
            if queue_down_text(exc):
                return f"queue {queue!r} is down (its node is unavailable): {exc}"
            return None
        except LINK_OR_AMQP_ERRORS:
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

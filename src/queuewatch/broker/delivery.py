"""A consumed message as the worker reads it: :class:`Delivery`.

aio-pika's ``IncomingMessage`` converts every property of a delivery when it is made (each
assignment through a checked ``__setattr__``): about a tenth of a no-op worker's CPU per
job. A :class:`Delivery` keeps aiormq's frame and reads a property when asked; the
worker reads five or six. It has the attributes and the settling calls of
``IncomingMessage`` that queuewatch uses, with the same values (the timestamp as a
``datetime``, the expiration in seconds, a missing priority as 0), and the same rule for a closed channel: reading
``channel`` then raises ``ChannelInvalidStateError``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from aio_pika.abc import DeliveryMode
from aio_pika.exceptions import ChannelInvalidStateError
from aio_pika.message import decode_expiration, decode_timestamp
from aiormq.abc import AbstractChannel, DeliveredMessage

T = TypeVar("T")


class _Property(Generic[T]):
    """A basic property of the delivery, as it came (no conversion)."""

    def __init__(self, field: str) -> None:
        self.field = field

    def __get__(self, obj: Delivery, owner: type[Delivery] | None = None) -> T:
        return getattr(obj._props, self.field)  # type: ignore[no-any-return]


class Delivery:
    """One delivery of a consumer (see the module docstring)."""

    __slots__ = (
        "_channel",
        "_props",
        "_raw",
        "body",
        "delivery_tag",
        "exchange",
        "no_ack",
        "redelivered",
        "routing_key",
    )

    def __init__(self, raw: DeliveredMessage, no_ack: bool = False) -> None:
        self._raw = raw
        self._props = raw.header.properties
        self._channel = raw.channel
        self.delivery_tag: int | None = raw.delivery_tag
        self.exchange: str | None = raw.exchange
        self.routing_key: str | None = raw.routing_key
        self.redelivered: bool | None = raw.redelivered
        self.body: bytes = raw.body
        self.no_ack = no_ack

    # -- properties, read when asked ---------------------------------------------------
    message_id = _Property[str | None]("message_id")
    content_type = _Property[str | None]("content_type")
    content_encoding = _Property[str | None]("content_encoding")
    correlation_id = _Property[str | None]("correlation_id")
    reply_to = _Property[str | None]("reply_to")
    type = _Property[str | None]("message_type")
    user_id = _Property[str | None]("user_id")
    app_id = _Property[str | None]("app_id")

    @property
    def headers(self) -> dict[str, Any]:
        return self._props.headers or {}

    @property
    def priority(self) -> int:
        priority = self._props.priority
        return 0 if priority is None else priority

    @property
    def delivery_mode(self) -> DeliveryMode:
        mode = self._props.delivery_mode
        return DeliveryMode(DeliveryMode.NOT_PERSISTENT if mode is None else mode)

    @property
    def expiration(self) -> float | None:
        return decode_expiration(self._props.expiration)  # type: ignore[no-any-return]

    @property
    def timestamp(self) -> datetime | None:
        return decode_timestamp(self._props.timestamp)

    @property
    def consumer_tag(self) -> str | None:
        return self._raw.consumer_tag

    @property
    def body_size(self) -> int:
        return len(self.body)

    # -- settling ----------------------------------------------------------------------
    @property
    def channel(self) -> AbstractChannel:
        """The channel it came on; raises ``ChannelInvalidStateError`` once that is closed
        (the broker then requeued the delivery)."""
        if self._channel.is_closed:
            raise ChannelInvalidStateError
        return self._channel

    async def ack(self, multiple: bool = False) -> None:
        await self.channel.basic_ack(self._tag(), multiple=multiple)

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None:
        await self.channel.basic_nack(self._tag(), multiple=multiple, requeue=requeue)

    async def reject(self, requeue: bool = False) -> None:
        await self.channel.basic_reject(self._tag(), requeue=requeue)

    def _tag(self) -> int:
        if self.no_ack or self.delivery_tag is None:
            raise TypeError("a delivery consumed with no_ack cannot be settled")
        return self.delivery_tag

    def __repr__(self) -> str:
        return f"<Delivery {self.delivery_tag} of {self.routing_key!r}: {self.message_id}>"

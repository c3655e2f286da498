"""The AMQP types the rest of queuewatch names in annotations and ``isinstance`` checks,
re-exported so that no module outside :mod:`queuewatch.broker` imports an AMQP library
(the import contract in ``pyproject.toml`` checks it)."""

from __future__ import annotations

from aio_pika import DeliveryMode, ExchangeType, Message
from aio_pika.abc import (
    AbstractChannel as Channel,
)
from aio_pika.abc import (
    AbstractConnection as Connection,
)
from aio_pika.abc import (
    AbstractExchange as Exchange,
)
from aio_pika.abc import (
    AbstractIncomingMessage as IncomingMessage,
)
from aio_pika.abc import (
    AbstractQueue as Queue,
)
from aiormq.abc import DeliveredMessage as Delivery
from pamqp.commands import Basic

Properties = Basic.Properties
"""AMQP message properties (``content_type``, ``headers``, ``message_id``, ...)."""

__all__ = [
    "Channel", "Connection", "Delivery", "DeliveryMode", "Exchange", "ExchangeType",
    "IncomingMessage", "Message", "Properties", "Queue",
]

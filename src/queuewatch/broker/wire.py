"""Every AMQP-library name the DLQ's bulk paths use, in this one module of the broker edge.

The DLQ's hot paths (peek, replay, export, import) talk to aiormq channels directly:
aio-pika's per-message objects cost more than the work itself at 100,000 messages. The
import contract in ``pyproject.toml`` keeps every AMQP library behind the broker edge;
:mod:`queuewatch.dlq` names them only through here.
"""

from __future__ import annotations

from typing import TypeAlias

import aiormq
import aiormq.exceptions
from aio_pika.abc import AbstractConnection
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

Connection: TypeAlias = AbstractConnection
"""An AMQP connection (aio-pika's)."""
Delivery: TypeAlias = DeliveredMessage
"""One message delivered to a consumer (aiormq's)."""
Properties = Basic.Properties
"""AMQP message properties (pamqp's)."""

AMQPError = aiormq.exceptions.AMQPError
"""Anything the broker or the AMQP client raises on a channel or connection."""
ChannelClosed = aiormq.exceptions.ChannelInvalidStateError
"""A channel used after it closed (its link broke, or the broker closed it)."""
ChannelNotFound = aiormq.exceptions.ChannelNotFoundEntity
"""404 NOT_FOUND: the queue or exchange does not exist."""
ChannelPreconditionFailed = aiormq.exceptions.ChannelPreconditionFailed
GlobalQosRefused = aiormq.exceptions.ConnectionNotImplemented
"""540 NOT_IMPLEMENTED: what a quorum queue answers to a global prefetch (on the
connection: RabbitMQ closes it)."""
Returned = aiormq.exceptions.PublishError
"""A ``mandatory`` publish came back unroutable."""
Nacked = aiormq.exceptions.DeliveryError
"""The broker refused a publish (``basic.nack``)."""

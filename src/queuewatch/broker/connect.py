"""AMQP connections with library errors translated into queuewatch's own."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractConnection, AbstractRobustConnection

from queuewatch.config import Settings, mask_url
from queuewatch.errors import AuthenticationFailed, BrokerUnavailable, NotFound

#: Seconds to wait for the TCP/AMQP handshake before calling the broker unavailable.
CONNECT_TIMEOUT = 10.0


def translate_connect_error(exc: BaseException, url: str, vhost: str) -> Exception:
    """Map an aio-pika/aiormq/OS connection failure to a queuewatch error."""
    shown = mask_url(url)
    text = str(exc)
    if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError) or "ACCESS_REFUSED" in text:
        return AuthenticationFailed(
            f"RabbitMQ at {shown} refused the credentials; check the user and password in amqp_url"
        )
    if "NOT_ALLOWED" in text or "Connection.Close" in text:
        return NotFound(
            f"vhost {vhost!r} does not exist on {shown} or the user may not use it "
            "(rabbitmqctl add_vhost / set_permissions)"
        )
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return BrokerUnavailable(f"RabbitMQ at {shown} did not answer within {CONNECT_TIMEOUT:g}s")
    return BrokerUnavailable(f"cannot connect to RabbitMQ at {shown}: {type(exc).__name__}: {text}")


async def connect(
    settings: Settings, vhost: str | None = None, *, robust: bool = False, **kwargs: Any
) -> AbstractConnection | AbstractRobustConnection:
    """Open an AMQP connection to ``vhost`` (default: the settings' vhost)."""
    vh = settings.effective_vhost if vhost is None else vhost
    url = settings.amqp_url_for(vh)
    factory = aio_pika.connect_robust if robust else aio_pika.connect
    try:
        return await asyncio.wait_for(factory(url, **kwargs), CONNECT_TIMEOUT)
    except (TimeoutError, aiormq.exceptions.AMQPError, OSError, ConnectionError) as exc:
        raise translate_connect_error(exc, url, vh) from exc

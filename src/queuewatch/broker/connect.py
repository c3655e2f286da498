"""Open one AMQP connection to one address, with library errors translated.

Most code wants :class:`~queuewatch.broker.link.BrokerLink` (failover, liveness, recovery);
:func:`connect` is the single-shot primitive under it, also used by one-shot commands.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
from aio_pika.abc import AbstractConnection

from queuewatch.broker.errors import LINK_OR_AMQP_ERRORS, quiet_library_logs, translate_connect_error
from queuewatch.broker.tls import client_context
from queuewatch.config import Settings
from queuewatch.errors import BrokerUnavailable

#: Seconds to wait for the TCP/AMQP handshake before calling an address unavailable.
CONNECT_TIMEOUT = 10.0

quiet_library_logs()


async def connect_one(
    settings: Settings, address: str, vhost: str | None = None, *, timeout: float = CONNECT_TIMEOUT,
    **kwargs: Any,
) -> AbstractConnection:
    """Open a connection to ``address`` (one of ``settings.amqp_addresses``) on ``vhost``."""
    vh = settings.effective_vhost if vhost is None else vhost
    url = shown = settings.amqp_url_for(vh, address)
    if "heartbeat=" not in url:  # the address's own query wins over the setting
        url += ("&" if "?" in url else "?") + f"heartbeat={int(settings.heartbeat)}"
    if url.startswith("amqps:") and "ssl_context" not in kwargs:
        kwargs["ssl_context"] = client_context(settings)
    try:
        return await asyncio.wait_for(aio_pika.connect(url, **kwargs), timeout)
    except LINK_OR_AMQP_ERRORS as exc:
        raise translate_connect_error(exc, shown, vh, timeout) from exc


async def connect(
    settings: Settings, vhost: str | None = None, *, timeout: float = CONNECT_TIMEOUT, **kwargs: Any
) -> AbstractConnection:
    """Open a connection to the first address of ``settings`` that answers (in order); the
    error of the last one when none does. No retry: see ``BrokerLink`` for that."""
    last: BrokerUnavailable | None = None
    for address in settings.amqp_addresses:
        try:
            return await connect_one(settings, address, vhost, timeout=timeout, **kwargs)
        except BrokerUnavailable as exc:  # credentials or vhost errors: every node says the same
            last = exc
    assert last is not None
    raise last

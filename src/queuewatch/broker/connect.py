"""Open one AMQP connection to one address, with library errors translated.

Most code wants :class:`~queuewatch.broker.link.BrokerLink` (failover, liveness, recovery);
:func:`connect` is the single-shot primitive under it, also used by one-shot commands.
"""

from __future__ import annotations

import contextlib
from typing import Any

import aio_pika
from aio_pika.abc import AbstractConnection
from aio_pika.connection import make_url

from queuewatch.aio import wait_for
from queuewatch.broker.errors import LINK_OR_AMQP_ERRORS, quiet_library_logs, translate_connect_error
from queuewatch.broker.tls import client_context
from queuewatch.config import Settings
from queuewatch.errors import BrokerUnavailable

#: Seconds to wait for the TCP/AMQP handshake before calling an address unavailable.
CONNECT_TIMEOUT = 10.0
#: Longest wait to close a connection whose opening failed (seconds).
DISCARD_TIMEOUT = 2.0

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
    # As aio_pika.connect builds it, but kept: a connect that fails or times out half-way
    # is closed here (dropped unclosed, aio-pika's __del__ schedules a close nobody awaits:
    # "coroutine 'Connection.close' was never awaited" after link cuts).
    ssl_context = kwargs.pop("ssl_context", None)
    client_properties = kwargs.pop("client_properties", None)
    connection = aio_pika.Connection(
        make_url(url, **kwargs), ssl_context=ssl_context,
        **({"client_properties": client_properties} if client_properties is not None else {}),
        **kwargs)
    try:
        await wait_for(connection.connect(timeout=timeout), timeout)
    except BaseException as exc:
        await _discard(connection)
        if isinstance(exc, LINK_OR_AMQP_ERRORS):
            raise translate_connect_error(exc, shown, vh, timeout) from exc
        raise
    return connection


async def _discard(connection: aio_pika.Connection) -> None:
    with contextlib.suppress(BaseException):
        await wait_for(connection.close(), DISCARD_TIMEOUT)


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

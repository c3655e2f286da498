"""The async producer (aio-pika): confirmed, mandatory, persistent publishes with a window.

``await producer.publish(...)`` returns once the broker confirmed the job. Many publishes may
be outstanding at once (``window``, default 256): call ``submit`` in a loop to pipeline them
(no per-message round trip) and ``flush`` at the end, or run ``publish`` from many tasks.

After a connection loss the producer reconnects and re-sends every job whose confirm had not
arrived (at-least-once: the same ``message_id`` may then arrive twice).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from queuewatch.broker.connect import connect
from queuewatch.config import Settings, mask_url
from queuewatch.errors import BackPressure, BrokerUnavailable, PublishError, Unroutable
from queuewatch.producer._common import (
    BACKPRESSURE_RETRY_INTERVAL,
    DEFAULT_WAIT_TIMEOUT,
    DEFAULT_WINDOW,
    Outgoing,
    Published,
    build,
    cap_of,
    delay_levels_of,
    published,
)
from queuewatch.producer.observer import ProducerObserver
from queuewatch.topology import Topology

log = logging.getLogger(__name__)

#: Give up re-sending after the broker has been unreachable this long (seconds).
DEFAULT_RECONNECT_TIMEOUT = 60.0
_RECONNECT_PAUSE = 0.5
_BLOCKED_POLL = 0.1
_LINK_ERRORS = (
    aiormq.exceptions.AMQPConnectionError, aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError, OSError, asyncio.TimeoutError, BrokerUnavailable,
    RuntimeError,  # aio-pika: "<Connection ...> closed" when the link died under us
)


class AsyncProducer:
    """Publish jobs with confirms from asyncio code. Use as ``async with AsyncProducer(...)``."""

    def __init__(
        self,
        settings: Settings,
        topology: Topology | int | None = None,
        *,
        window: int = DEFAULT_WINDOW,
        connection_name: str = "queuewatch-producer",
        reconnect_timeout: float = DEFAULT_RECONNECT_TIMEOUT,
        observer: ProducerObserver | None = None,
    ) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self.settings = settings
        self.topology = topology
        self.delay_levels = delay_levels_of(topology)
        self.window = window
        self.connection_name = connection_name
        self.reconnect_timeout = reconnect_timeout
        self.observer = observer or ProducerObserver()
        self._slots = asyncio.Semaphore(window)
        self._pending: set[asyncio.Future[Published]] = set()
        self._conn: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self.reconnects = 0
        """How many times the producer had to reconnect."""

    # -- lifecycle ---------------------------------------------------------------------
    async def connect(self) -> None:
        await self._ensure_channel(time.monotonic() + self.reconnect_timeout)

    async def close(self) -> None:
        """Wait for outstanding confirms, then close the connection."""
        try:
            await self.flush()
        finally:
            self._closed = True
            if self._conn is not None and not self._conn.is_closed:
                await self._conn.close()
            self._conn = self._channel = None

    async def __aenter__(self) -> AsyncProducer:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def blocked(self) -> bool:
        """True while the broker blocks publishing (memory or disk alarm)."""
        return _is_blocked(self._conn)

    @property
    def in_flight(self) -> int:
        return self.window - self._slots._value

    # -- publishing --------------------------------------------------------------------
    async def publish(
        self,
        queue: str,
        payload: Any,
        *,
        priority: int | None = None,
        delay: float | None = None,
        job_id: str | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, Any] | None = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> Published:
        """Publish one job and wait for its confirm.

        Raises :class:`BackPressure` when the queue is full (with ``wait=True``: keeps trying
        until ``timeout`` seconds, default 30), :class:`Unroutable` when no queue matched.
        """
        fut = await self.submit(
            queue, payload, priority=priority, delay=delay, job_id=job_id,
            idempotency_key=idempotency_key, headers=headers, wait=wait, timeout=timeout,
        )
        return await fut

    async def submit(
        self,
        queue: str,
        payload: Any,
        *,
        priority: int | None = None,
        delay: float | None = None,
        job_id: str | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, Any] | None = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> asyncio.Future[Published]:
        """Start a publish; returns once it is in the window, with a future for its confirm."""
        out = build(
            queue, payload, delay_levels=self.delay_levels, priority=priority, delay=delay,
            job_id=job_id, idempotency_key=idempotency_key, headers=headers,
        )
        return await self.submit_outgoing(out, wait=wait, timeout=timeout)

    async def submit_outgoing(
        self, out: Outgoing, *, wait: bool = False, timeout: float | None = None
    ) -> asyncio.Future[Published]:
        if self._closed:
            raise PublishError("the producer is closed")
        await self._slots.acquire()
        fut: asyncio.Future[Published] = asyncio.ensure_future(self._send(out, wait, timeout))
        self._pending.add(fut)
        fut.add_done_callback(self._done)
        return fut

    async def flush(self) -> None:
        """Wait until every submitted publish is confirmed or failed (errors stay in futures)."""
        while self._pending:
            await asyncio.wait(list(self._pending))

    def _done(self, fut: asyncio.Future[Published]) -> None:
        self._pending.discard(fut)
        self._slots.release()

    async def _send(self, out: Outgoing, wait: bool, timeout: float | None) -> Published:
        wait_deadline = time.monotonic() + (DEFAULT_WAIT_TIMEOUT if timeout is None else timeout)
        link_deadline: float | None = None
        props = Basic.Properties(
            content_type=out.content_type, delivery_mode=2, priority=out.priority,
            message_id=out.message_id, timestamp=_ts(out.timestamp), headers=out.headers,
        )
        while True:
            try:
                channel = await self._ensure_channel(
                    link_deadline or time.monotonic() + self.reconnect_timeout
                )
                if _is_blocked(self._conn):
                    await self._wait_unblocked()
                underlay = await channel.get_underlay_channel()
                result = await underlay.basic_publish(
                    out.body, exchange=out.exchange, routing_key=out.routing_key,
                    properties=props, mandatory=True,
                )
            except aiormq.exceptions.PublishError as exc:
                raise Unroutable(out.exchange, out.routing_key) from exc
            except aiormq.exceptions.DeliveryError as exc:
                self.observer.on_publish_nack(out.queue)
                if wait and time.monotonic() < wait_deadline:
                    await asyncio.sleep(BACKPRESSURE_RETRY_INTERVAL)
                    continue
                raise BackPressure(out.queue, cap_of(self.topology, out.queue)) from exc
            except aiormq.exceptions.ChannelNotFoundEntity as exc:
                self._channel = None
                raise Unroutable(out.exchange, out.routing_key) from exc
            except aiormq.exceptions.AMQPChannelError as exc:
                self._channel = None
                raise PublishError(f"publish to {out.queue!r} failed: {exc}") from exc
            except _LINK_ERRORS as exc:
                now = time.monotonic()
                link_deadline = link_deadline or now + self.reconnect_timeout
                if now >= link_deadline or self._closed:
                    raise BrokerUnavailable(
                        f"publish to {out.queue!r} not confirmed: broker unreachable ({exc})"
                    ) from exc
                log.warning("publish of %s interrupted (%s); re-sending", out.message_id, exc)
                await asyncio.sleep(_RECONNECT_PAUSE / 5)
                continue
            if isinstance(result, DeliveredMessage):
                raise Unroutable(out.exchange, out.routing_key)
            return published(out)

    async def _ensure_channel(self, deadline: float) -> AbstractChannel:
        channel = self._channel
        if channel is not None and not channel.is_closed:
            return channel
        async with self._lock:
            while self._channel is None or self._channel.is_closed:
                try:
                    if self._conn is not None and self._conn.is_closed:
                        await self._drop_connection()
                    if self._conn is None:
                        self._conn = await connect(
                            self.settings, client_properties={"connection_name": self.connection_name}
                        )
                    self._channel = await self._conn.channel(publisher_confirms=True)
                except _LINK_ERRORS as exc:
                    self._channel = None
                    await self._drop_connection()
                    if time.monotonic() >= deadline:
                        raise BrokerUnavailable(
                            f"cannot reach RabbitMQ at {mask_url(self.settings.amqp_url)}: {exc}"
                        ) from exc
                    await asyncio.sleep(_RECONNECT_PAUSE)
            return self._channel

    async def _wait_unblocked(self) -> None:
        """Hold publishes while the broker blocks the connection (memory or disk alarm)."""
        self.observer.on_blocked(True)
        log.warning("RabbitMQ blocked publishing (resource alarm); waiting")
        try:
            while _is_blocked(self._conn) and not self._closed:
                await asyncio.sleep(_BLOCKED_POLL)
        finally:
            self.observer.on_blocked(False)

    async def _drop_connection(self) -> None:
        """Forget a connection that failed; the next publish opens a new one."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        self.reconnects += 1
        if not conn.is_closed:
            try:
                await conn.close()
            except _LINK_ERRORS as exc:
                log.debug("closing a dead connection: %s", exc)


def _ts(seconds: int) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC)


def _is_blocked(conn: AbstractConnection | None) -> bool:
    """Whether the broker sent ``connection.blocked`` (aiormq keeps it in a private event)."""
    if conn is None:
        return False
    transport = getattr(conn, "transport", None)
    raw = getattr(transport, "connection", None)
    event = getattr(raw, "_Connection__connection_unblocked", None)
    return isinstance(event, asyncio.Event) and not event.is_set()

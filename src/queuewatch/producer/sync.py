"""The sync producer (pika ``BlockingConnection``) for Flask/Django-style code.

Same call shape as :class:`~queuewatch.producer.AsyncProducer`; every ``publish`` waits for
its confirm (that is what a blocking client can do). Not thread-safe: one producer per thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import pika
import pika.exceptions

from queuewatch.broker.policy import policy_for
from queuewatch.broker.publish import Outcome, classify_pika_error
from queuewatch.config import Settings, mask_url
from queuewatch.errors import (
    AuthenticationFailed,
    BackPressure,
    BrokerUnavailable,
    PublishError,
    QueueDown,
    Unroutable,
)
from queuewatch.producer._common import (
    BACKPRESSURE_RETRY_INTERVAL,
    DEFAULT_WAIT_TIMEOUT,
    Published,
    build,
    cap_of,
    delay_levels_of,
    published,
)
from queuewatch.producer.observer import ProducerObserver
from queuewatch.topology import Topology

log = logging.getLogger(__name__)

DEFAULT_RECONNECT_TIMEOUT = 30.0
#: pika closes a connection that stays blocked longer than this (seconds).
BLOCKED_CONNECTION_TIMEOUT = 300.0
_LINK_ERRORS = (
    pika.exceptions.AMQPConnectionError, pika.exceptions.ChannelClosed,
    pika.exceptions.ChannelWrongStateError, pika.exceptions.StreamLostError, OSError,
)


class Producer:
    """Publish jobs with confirms from blocking code. Use as ``with Producer(...) as p``."""

    def __init__(
        self,
        settings: Settings,
        topology: Topology | int | None = None,
        *,
        connection_name: str = "queuewatch-sync-producer",
        reconnect_timeout: float = DEFAULT_RECONNECT_TIMEOUT,
        observer: ProducerObserver | None = None,
    ) -> None:
        self.settings = settings
        self.topology = topology
        self.delay_levels = delay_levels_of(topology)
        self.connection_name = connection_name
        self.reconnect_timeout = reconnect_timeout
        self.observer = observer or ProducerObserver()
        self._conn: Any = None
        self._channel: Any = None
        self.blocked = False
        """True while the broker blocks publishing (memory or disk alarm)."""
        self.reconnects = 0
        self._backoff = policy_for(settings.reconnect_max_delay).backoff()
        self._next_address = 0
        self.attempts: list[float] = []
        """Monotonic time of every connect attempt."""

    def connect(self) -> None:
        self._ensure(time.monotonic() + self.reconnect_timeout)

    def close(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None and conn.is_open:
            try:
                conn.close()
            except _LINK_ERRORS:
                log.debug("connection already gone while closing")

    def __enter__(self) -> Producer:
        self.connect()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def publish(
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
        """Publish one job and wait for its confirm (see ``AsyncProducer.publish``)."""
        out = build(
            queue, payload, delay_levels=self.delay_levels, priority=priority, delay=delay,
            job_id=job_id, idempotency_key=idempotency_key, headers=headers,
        )
        props = pika.BasicProperties(
            content_type=out.content_type, delivery_mode=2, priority=out.priority,
            message_id=out.message_id, timestamp=out.timestamp, headers=out.headers,
        )
        wait_deadline = time.monotonic() + (DEFAULT_WAIT_TIMEOUT if timeout is None else timeout)
        link_deadline: float | None = None
        while True:
            try:
                channel = self._ensure(link_deadline or time.monotonic() + self.reconnect_timeout)
                channel.basic_publish(
                    out.exchange, out.routing_key, out.body, props, mandatory=True
                )
                return published(out)
            except (pika.exceptions.UnroutableError, pika.exceptions.NackError,
                    pika.exceptions.ChannelClosedByBroker, *_LINK_ERRORS) as caught:
                exc: BaseException = caught
                result = classify_pika_error(exc)
            if isinstance(exc, pika.exceptions.ChannelClosedByBroker) or result.outcome is Outcome.LINK_LOST:
                self._channel = None
            match result.outcome:
                case Outcome.NACKED if isinstance(exc, pika.exceptions.NackError):
                    self.observer.on_publish_nack(queue)
                    if wait and time.monotonic() < wait_deadline:
                        time.sleep(BACKPRESSURE_RETRY_INTERVAL)
                        continue
                    raise BackPressure(queue, cap_of(self.topology, queue)) from exc
                case Outcome.NACKED:
                    raise PublishError(f"publish to {queue!r} failed: {result.detail}") from exc
                case Outcome.UNROUTABLE:
                    raise Unroutable(out.exchange, out.routing_key) from exc
                case Outcome.QUEUE_DOWN:
                    raise QueueDown(queue, result.detail) from exc
            now = time.monotonic()
            link_deadline = link_deadline or now + self.reconnect_timeout
            if now >= link_deadline:
                raise BrokerUnavailable(f"publish to {queue!r} not confirmed: {result.detail}") from exc
            log.warning("publish of %s interrupted (%s); re-sending", out.message_id, result.detail)

    # -- connection ----------------------------------------------------------------------
    def _ensure(self, deadline: float) -> Any:
        """A confirm channel, connecting along the addresses (the last good one first) with
        the shared backoff policy until ``deadline``."""
        addresses = self.settings.amqp_addresses
        while self._channel is None or not self._channel.is_open:
            index = self._next_address % len(addresses)
            address = addresses[index]
            try:
                if self._conn is None or not self._conn.is_open:
                    if self._conn is not None:
                        self.reconnects += 1
                    self.attempts.append(time.monotonic())
                    self._conn = pika.BlockingConnection(self._parameters(address))
                    self._conn.add_on_connection_blocked_callback(self._on_blocked)
                    self._conn.add_on_connection_unblocked_callback(self._on_unblocked)
                channel = self._conn.channel()
                channel.confirm_delivery()
                self._channel = channel
                self._backoff.reset()
            except pika.exceptions.ProbableAuthenticationError as exc:
                raise AuthenticationFailed(
                    f"RabbitMQ at {mask_url(address)} refused the credentials"
                ) from exc
            except _LINK_ERRORS as exc:
                self._conn = None if self._conn is None or not self._conn.is_open else self._conn
                if self._conn is None:
                    self._next_address = index + 1  # fail over to the next address
                if time.monotonic() >= deadline:
                    raise BrokerUnavailable(
                        f"cannot reach RabbitMQ at {', '.join(mask_url(a) for a in addresses)}: "
                        f"{type(exc).__name__}"
                    ) from exc
                if self._next_address % len(addresses) == 0 or self._conn is not None:
                    time.sleep(min(self._backoff.next_delay(), max(deadline - time.monotonic(), 0)))
        return self._channel

    def _parameters(self, address: str) -> pika.URLParameters:
        params = pika.URLParameters(self.settings.amqp_url_for(address=address))
        params.client_properties = {"connection_name": self.connection_name}
        params.blocked_connection_timeout = BLOCKED_CONNECTION_TIMEOUT
        params.heartbeat = self.settings.heartbeat
        return params

    def _on_blocked(self, *_: Any) -> None:
        self.blocked = True
        self.observer.on_blocked(True)

    def _on_unblocked(self, *_: Any) -> None:
        self.blocked = False
        self.observer.on_blocked(False)

"""The blocking (pika) side of the broker edge, for sync code: :class:`BlockingLink`.

The same address list, reconnect policy and outcome classification as the asyncio
:class:`~queuewatch.broker.link.BrokerLink` and
:class:`~queuewatch.broker.publish.ConfirmedPublisher`; every publish waits for its confirm
(that is what a blocking client can do). Not thread-safe: one link per thread.

Every wait has the caller's deadline, also on a silent network (a black hole: the connection
stays open and nothing comes back), where pika by itself waits for its heartbeat check (up
to ``2 * (heartbeat + 5)`` s, for ever with heartbeats off) and then for its AMQP handshake
timeout (15 s) per connect attempt: a connect attempt is given the time left, and a call on
an open connection (a channel open, a confirm, a declare) that has no answer by the deadline
drops the connection (:class:`NoAnswer`, one of the link errors).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pika
import pika.exceptions
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from queuewatch.broker.policy import policy_for
from queuewatch.broker.publish import (
    BLOCKED_RECHECK,
    MIN_CONFIRM_WAIT,
    Outcome,
    PublishResult,
    classify_pika_error,
)
from queuewatch.broker.tls import client_context
from queuewatch.config import Settings, mask_url
from queuewatch.errors import AuthenticationFailed, BrokerUnavailable

log = logging.getLogger(__name__)

#: pika closes a connection that stays blocked longer than this (seconds).
BLOCKED_CONNECTION_TIMEOUT = 300.0
#: The least any one wait on the broker (a connect attempt, a confirm, a reply) is given, even
#: when the caller's deadline is (nearly) spent: a broker that is up answers in milliseconds,
#: and a deadline spent elsewhere must not cut a healthy link (seconds).
MIN_WAIT = MIN_CONFIRM_WAIT


class NoAnswer(pika.exceptions.AMQPConnectionError):  # type: ignore[misc]  # pika is untyped
    """The broker did not answer by the caller's deadline: the link is taken as dead (a
    silent network) and its connection dropped."""


#: "The link broke" for pika: also its connect workflow's own errors (a handshake that
#: timed out, ``AMQPConnectorStackTimeout``, is not an ``AMQPConnectionError``).
_LINK_ERRORS = (
    pika.exceptions.AMQPConnectionError, AMQPConnectorException, pika.exceptions.ChannelClosed,
    pika.exceptions.ChannelWrongStateError, pika.exceptions.StreamLostError, OSError,
)
_PUBLISH_ERRORS = (pika.exceptions.UnroutableError, pika.exceptions.NackError, *_LINK_ERRORS)


class BlockingLink:
    """A pika connection with a confirm channel, failing over along
    ``settings.amqp_addresses`` with the shared backoff policy."""

    def __init__(self, settings: Settings, *, name: str,
                 on_blocked: Callable[[bool], None] | None = None) -> None:
        self.settings = settings
        self.name = name
        self.on_blocked = on_blocked
        self._conn: Any = None
        self._channel: Any = None
        self._backoff = policy_for(settings.reconnect_max_delay).backoff()
        self._next_address = 0
        self.blocked = False
        """True while the broker blocks publishing (memory or disk alarm)."""
        self.reconnects = 0
        self._held_back: Callable[[], bool] = lambda: False
        self.attempts: list[float] = []
        """Monotonic time of every connect attempt."""

    @property
    def alive(self) -> bool:
        """Whether the confirm channel is open, as the last call left it (pika notices a
        lost link on its next call). Reads state only: safe from another thread."""
        channel = self._channel
        return channel is not None and bool(channel.is_open)

    def connect(self, timeout: float) -> None:
        self._ensure(time.monotonic() + timeout)

    def close(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None and conn.is_open:
            try:
                # (not held by a block: a blocked connection's Close is not read either)
                with _answer_by(conn, time.monotonic() + MIN_WAIT, lambda: False):
                    conn.close()
            except _LINK_ERRORS:
                log.debug("connection already gone while closing")

    def publish(
        self, body: bytes, *, exchange: str, routing_key: str, deadline: float,
        content_type: str, message_id: str, timestamp: int, headers: Mapping[str, Any],
        priority: int | None = None,
    ) -> PublishResult:
        """One persistent, mandatory publish and its confirm, as one outcome, by ``deadline``
        (monotonic; the confirm is given :data:`MIN_WAIT` at least): no confirm by then is
        ``link_lost`` (the message may have arrived) and the connection is dropped."""
        props = pika.BasicProperties(
            content_type=content_type, delivery_mode=2, priority=priority,
            message_id=message_id, timestamp=timestamp, headers=dict(headers),
        )
        try:
            channel = self._ensure(deadline)
            with self._answer_by(self._conn, deadline):
                channel.basic_publish(exchange, routing_key, body, props, mandatory=True)
        except BrokerUnavailable as exc:
            return PublishResult(Outcome.LINK_LOST, str(exc))
        except (*_PUBLISH_ERRORS, pika.exceptions.ChannelClosedByBroker) as exc:
            result = classify_pika_error(exc)
            if isinstance(exc, pika.exceptions.ChannelClosedByBroker) or not isinstance(
                    exc, pika.exceptions.UnroutableError | pika.exceptions.NackError):
                self._channel = None
            return result
        return PublishResult(Outcome.CONFIRMED)

    def declare_queue(self, name: str, arguments: Mapping[str, Any], deadline: float) -> bool:
        """Declare a durable queue (idempotent); False when the broker refused it (declared
        before with other arguments) or the link broke."""
        try:
            channel = self._ensure(deadline)
            with self._answer_by(self._conn, deadline):
                channel.queue_declare(name, durable=True, arguments=dict(arguments))
        except BrokerUnavailable:
            return False
        except (*_LINK_ERRORS, pika.exceptions.ChannelClosedByBroker) as exc:
            log.debug("declaring %r: %s", name, exc)
            self._channel = None
            return False
        return True

    def peek(self, name: str, deadline: float) -> bytes | None:
        """The body of the message at the head of queue ``name``, left in place (a
        ``basic.get`` then a requeue); None when it is empty or cannot be read."""
        try:
            channel = self._ensure(deadline)
            with self._answer_by(self._conn, deadline):
                method, _props, body = channel.basic_get(name, auto_ack=False)
                if method is None:
                    return None
                channel.basic_nack(method.delivery_tag, requeue=True)
            return bytes(body)
        except (BrokerUnavailable, *_LINK_ERRORS, pika.exceptions.ChannelClosedByBroker):
            self._channel = None
            return None

    def purge(self, name: str, deadline: float) -> None:
        """Empty queue ``name`` (a missing queue, or a broken link, is not an error here)."""
        try:
            channel = self._ensure(deadline)
            with self._answer_by(self._conn, deadline):
                channel.queue_purge(name)
        except (BrokerUnavailable, *_LINK_ERRORS, pika.exceptions.ChannelClosedByBroker):
            self._channel = None

    def _ensure(self, deadline: float) -> Any:
        """A confirm channel, connecting along the addresses (the last good one first),
        backing off after a full round, until ``deadline`` (each attempt is given the time
        left, :data:`MIN_WAIT` at least)."""
        addresses = self.settings.amqp_addresses
        while self._channel is None or not self._channel.is_open:
            index = self._next_address % len(addresses)
            address = addresses[index]
            try:
                if self._conn is None or not self._conn.is_open:
                    if self._conn is not None:
                        self.reconnects += 1
                    self.attempts.append(time.monotonic())
                    self._conn = pika.BlockingConnection(self._parameters(address, deadline))
                    self._conn.add_on_connection_blocked_callback(lambda *_: self._set_blocked(True))
                    self._conn.add_on_connection_unblocked_callback(lambda *_: self._set_blocked(False))
                    self._held_back = _blocked_now(self._conn)
                with self._answer_by(self._conn, deadline):
                    channel = self._conn.channel()
                    channel.confirm_delivery()
                self._channel = channel
                self._backoff.reset()
            except pika.exceptions.ProbableAuthenticationError as exc:
                raise AuthenticationFailed(
                    f"RabbitMQ at {mask_url(address)} refused the credentials") from exc
            except _LINK_ERRORS as exc:
                self._conn = None if self._conn is None or not self._conn.is_open else self._conn
                if self._conn is None:
                    self._next_address = index + 1  # fail over to the next address
                if time.monotonic() >= deadline:
                    raise BrokerUnavailable(
                        f"cannot reach RabbitMQ at {', '.join(mask_url(a) for a in addresses)}: "
                        f"{type(exc).__name__}") from exc
                if self._next_address % len(addresses) == 0 or self._conn is not None:
                    time.sleep(min(self._backoff.next_delay(), max(deadline - time.monotonic(), 0)))
        return self._channel

    def _answer_by(self, conn: Any, deadline: float) -> Any:
        """Bound the blocking calls made on ``conn`` inside the ``with``: see :func:`_answer_by`."""
        return _answer_by(conn, deadline, self._held_back)

    def _parameters(self, address: str, deadline: float | None = None) -> pika.URLParameters:
        params = pika.URLParameters(self.settings.amqp_url_for(address=address))
        params.client_properties = {"connection_name": self.name}
        params.blocked_connection_timeout = BLOCKED_CONNECTION_TIMEOUT
        params.heartbeat = self.settings.heartbeat
        if deadline is not None:  # TCP connect, TLS and the AMQP handshake, within the time left
            wait = max(deadline - time.monotonic(), MIN_WAIT)
            params.stack_timeout = wait
            params.socket_timeout = min(params.socket_timeout or wait, wait)
        if params.ssl_options is not None:  # amqps: our CA and client certificate, verified
            context = client_context(self.settings) or params.ssl_options.context
            params.ssl_options = pika.SSLOptions(context, server_hostname=params.host)
        return params

    def _set_blocked(self, blocked: bool) -> None:
        self.blocked = blocked
        if self.on_blocked is not None:
            self.on_blocked(blocked)


def _blocked_now(conn: Any) -> Callable[[], bool]:
    """Whether the broker blocks ``conn`` right now, as pika's connection under it hears it:
    the BlockingConnection's own blocked callbacks (``BlockingLink.blocked``) run only
    between calls, not during the confirm wait a block holds back."""
    state = [False]
    impl = conn._impl
    impl.add_on_connection_blocked_callback(lambda *_: state.__setitem__(0, True))
    impl.add_on_connection_unblocked_callback(lambda *_: state.__setitem__(0, False))
    return lambda: state[0]


@contextmanager
def _answer_by(conn: Any, deadline: float, blocked: Callable[[], bool]) -> Iterator[None]:
    """A blocking pika call inside the ``with`` that has no answer by ``deadline``
    (:data:`MIN_WAIT` from now at least) raises :class:`NoAnswer`: the connection is
    dropped, as pika's own heartbeat check drops a silent one (pika ends a blocking wait only
    when its connection closes). While ``blocked()`` the wait goes on (a resource alarm)."""
    if conn is None or not conn.is_open:
        yield  # the call fails at once on its own
        return
    impl = conn._impl  # the SelectConnection under the BlockingConnection, whose loop the call runs
    wait = max(deadline - time.monotonic(), MIN_WAIT)
    timer: Any = None

    def expire() -> None:
        nonlocal timer
        if blocked():
            timer = impl.ioloop.call_later(BLOCKED_RECHECK, expire)
            return
        timer = None
        impl._terminate_stream(NoAnswer(f"no answer from RabbitMQ within {wait:.3g}s"))

    timer = impl.ioloop.call_later(wait, expire)
    try:
        yield
    finally:
        if timer is not None:
            impl.ioloop.remove_timeout(timer)

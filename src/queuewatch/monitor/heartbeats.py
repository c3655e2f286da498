"""Where worker heartbeats come from: the telemetry exchange, or anything holding them.

:class:`AmqpHeartbeatSource` binds an exclusive auto-delete queue to ``heartbeat.#`` on the
telemetry exchange and keeps the latest beat per worker. The monitor only needs
:class:`HeartbeatSource` (``latest()``), so tests and tools can hand in their own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from queuewatch.errors import BrokerError
from queuewatch.telemetry import HEARTBEAT_KEY_PREFIX, Heartbeat, listener_queue_name

log = logging.getLogger(__name__)

#: Forget a worker whose last heartbeat is older than this (seconds).
FORGET_AFTER = 300.0


@dataclass(frozen=True)
class ReceivedHeartbeat:
    heartbeat: Heartbeat
    received_at: float
    """Epoch seconds on the monitor's clock (immune to the worker's clock skew)."""


class HeartbeatSource(Protocol):
    def latest(self) -> Mapping[str, ReceivedHeartbeat]:
        """The newest heartbeat of every worker, by worker id."""
        ...


class StaticHeartbeats:
    """A heartbeat source you fill yourself (tests, replays, other transports)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._beats: dict[str, ReceivedHeartbeat] = {}

    def add(self, heartbeat: Heartbeat, received_at: float | None = None) -> None:
        at = self._clock() if received_at is None else received_at
        self._beats[heartbeat.worker_id] = ReceivedHeartbeat(heartbeat, at)

    def latest(self) -> Mapping[str, ReceivedHeartbeat]:
        return dict(self._beats)


class AmqpHeartbeatSource(StaticHeartbeats):
    """Consumes heartbeats from the telemetry exchange over ``connection`` (not owned)."""

    def __init__(
        self,
        connection: AbstractConnection,
        exchange: str,
        clock: Callable[[], float] = time.time,
        forget_after: float = FORGET_AFTER,
    ) -> None:
        super().__init__(clock)
        self.connection = connection
        self.exchange = exchange
        self.forget_after = forget_after
        self._channel: AbstractChannel | None = None
        self.decode_errors = 0

    async def start(self) -> None:
        """Declare the private queue, bind it and start consuming (idempotent)."""
        if self._channel is not None:
            return
        try:
            channel = await self._exchange_channel()
            queue = await channel.declare_queue(listener_queue_name(), exclusive=True,
                                                auto_delete=True, durable=False)
            await queue.bind(self.exchange, routing_key=HEARTBEAT_KEY_PREFIX + "#")
            await queue.consume(self._on_message, no_ack=True)
        except aiormq.exceptions.AMQPError as exc:
            raise BrokerError(f"cannot listen to heartbeats on {self.exchange!r}: {exc}") from exc
        self._channel = channel

    async def _exchange_channel(self) -> AbstractChannel:
        """A channel on which the telemetry exchange exists (declared topic/durable if missing)."""
        channel = await self.connection.channel()
        try:
            await channel.declare_exchange(self.exchange, passive=True)
            return channel
        except aiormq.exceptions.ChannelNotFoundEntity:
            log.info("telemetry exchange %r missing; declaring it (topic, durable)", self.exchange)
        channel = await self.connection.channel()
        await channel.declare_exchange(self.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        return channel

    async def stop(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            await channel.close()

    async def __aenter__(self) -> AmqpHeartbeatSource:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            beat = Heartbeat.from_json(message.body)
        except (ValueError, TypeError, KeyError) as exc:
            self.decode_errors += 1
            log.warning("ignoring an undecodable heartbeat (%s: %s)", type(exc).__name__, exc)
            return
        self.add(beat)

    def latest(self) -> Mapping[str, ReceivedHeartbeat]:
        now = self._clock()
        for worker_id, beat in list(self._beats.items()):
            if now - beat.received_at > self.forget_after:
                del self._beats[worker_id]
        return dict(self._beats)

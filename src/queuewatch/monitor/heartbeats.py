"""Where worker heartbeats come from: the telemetry exchange, or anything holding them.

The monitor only needs :class:`HeartbeatSource`: ``latest()`` beats and ``feed()``, whether
beats can reach us at all (see :mod:`queuewatch.monitor.freshness`), so tests and tools can
hand in their own. :class:`HeartbeatFeed` is the one the session fills from a subscription
that survives reconnects, with its liveness proven by probes; :class:`AmqpHeartbeatSource`
listens on one plain connection (one-shot tools and tests).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from queuewatch.broker.errors import AMQPError, ChannelNotFound
from queuewatch.broker.types import Channel, Connection, ExchangeType, IncomingMessage
from queuewatch.errors import BrokerError
from queuewatch.monitor.freshness import ALWAYS_LIVE
from queuewatch.monitor.model import FeedStatus
from queuewatch.telemetry import HEARTBEAT_KEY_PREFIX, Heartbeat, listener_queue_name

log = logging.getLogger(__name__)

#: Forget a worker whose last heartbeat is older than this (seconds).
FORGET_AFTER = 300.0
#: Routing key prefix of the feed's own probes (not ``heartbeat.*``: no one else gets them).
PROBE_KEY_PREFIX = "queuewatch-probe."
#: The session sends a probe this often (seconds)...
PROBE_INTERVAL = 1.0
#: ...and the feed counts as down when none came back for this long (seconds).
PROBE_TIMEOUT = 3.0


@dataclass(frozen=True)
class ReceivedHeartbeat:
    heartbeat: Heartbeat
    received_at: float
    """Epoch seconds on the monitor's clock (immune to the worker's clock skew)."""


class HeartbeatSource(Protocol):
    def latest(self) -> Mapping[str, ReceivedHeartbeat]:
        """The newest heartbeat of every worker, by worker id."""
        ...

    def feed(self) -> FeedStatus:
        """Whether beats can reach us now (live since when, or down since when and why)."""
        ...


class StaticHeartbeats:
    """A heartbeat source you fill yourself (tests, replays, other transports)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._beats: dict[str, ReceivedHeartbeat] = {}
        self.decode_errors = 0

    def add(self, heartbeat: Heartbeat, received_at: float | None = None) -> None:
        at = self._clock() if received_at is None else received_at
        self._beats[heartbeat.worker_id] = ReceivedHeartbeat(heartbeat, at)

    def receive(self, body: bytes) -> None:
        """Decode one heartbeat message and keep it (an undecodable one is counted, logged)."""
        try:
            beat = Heartbeat.from_json(body)
        except (ValueError, TypeError, KeyError) as exc:
            self.decode_errors += 1
            log.warning("ignoring an undecodable heartbeat (%s: %s)", type(exc).__name__, exc)
            return
        self.add(beat)

    def latest(self) -> Mapping[str, ReceivedHeartbeat]:
        return dict(self._beats)

    def feed(self) -> FeedStatus:
        return ALWAYS_LIVE


class AmqpHeartbeatSource(StaticHeartbeats):
    """Consumes heartbeats from the telemetry exchange over ``connection`` (not owned)."""

    def __init__(
        self,
        connection: Connection,
        exchange: str,
        clock: Callable[[], float] = time.time,
        forget_after: float = FORGET_AFTER,
    ) -> None:
        super().__init__(clock)
        self.connection = connection
        self.exchange = exchange
        self.forget_after = forget_after
        self._channel: Channel | None = None
        self._since = clock()

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
        except AMQPError as exc:
            raise BrokerError(f"cannot listen to heartbeats on {self.exchange!r}: {exc}") from exc
        self._channel = channel
        self._since = self._clock()

    def feed(self) -> FeedStatus:
        """Live while its channel is open (no probes: for short-lived listeners)."""
        if self._channel is None or self._channel.is_closed:
            return FeedStatus(False, self._since, "not listening")
        return FeedStatus(True, self._since)

    async def _exchange_channel(self) -> Channel:
        """A channel on which the telemetry exchange exists (declared topic/durable if missing)."""
        channel = await self.connection.channel()
        try:
            await channel.declare_exchange(self.exchange, passive=True)
            return channel
        except ChannelNotFound:
            log.info("telemetry exchange %r missing; declaring it (topic, durable)", self.exchange)
        channel = await self.connection.channel()
        await channel.declare_exchange(self.exchange, ExchangeType.TOPIC, durable=True)
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

    async def _on_message(self, message: IncomingMessage) -> None:
        self.receive(message.body)

    def latest(self) -> Mapping[str, ReceivedHeartbeat]:
        now = self._clock()
        for worker_id, beat in list(self._beats.items()):
            if now - beat.received_at > self.forget_after:
                del self._beats[worker_id]
        return dict(self._beats)


class HeartbeatFeed(StaticHeartbeats):
    """Heartbeats delivered by a subscription the session keeps alive, and whether that feed
    is live.

    Live means proven end to end: the session publishes a probe to the telemetry exchange
    every :data:`PROBE_INTERVAL` with :attr:`probe_key`, which only our own listener queue
    is bound to, and the feed is live while a probe came back within :data:`PROBE_TIMEOUT`.
    A socket that died without a word, a consumer the broker cancelled or a listener queue
    that is gone all stop the probes, so they cannot pass for silent workers.
    """

    def __init__(self, clock: Callable[[], float] = time.time,
                 forget_after: float = FORGET_AFTER) -> None:
        super().__init__(clock)
        self.forget_after = forget_after
        self.probe_key = PROBE_KEY_PREFIX + uuid.uuid4().hex[:12]
        self.probes_back = 0
        self._live_since: float | None = None
        self._last_probe: float | None = None
        self._down_since = clock()
        self._reason = "not subscribed yet"

    async def on_message(self, message: IncomingMessage) -> None:
        """The subscription's callback: a probe of ours, or a worker's heartbeat."""
        if message.routing_key == self.probe_key:
            self.probe_back()
        else:
            self.receive(message.body)

    def probe_back(self) -> None:
        now = self._clock()
        if self._live_since is None or self._late(now):
            self._live_since = now
        self._last_probe = now
        self.probes_back += 1

    def lost(self, reason: str) -> None:
        """The subscription stopped (link down, cancelled, channel closed)."""
        if self._live_since is not None:
            self._down_since = self._last_probe or self._clock()
        self._live_since = self._last_probe = None
        self._reason = reason

    def _late(self, now: float) -> bool:
        return self._last_probe is None or now - self._last_probe > PROBE_TIMEOUT

    def feed(self) -> FeedStatus:
        now = self._clock()
        if self._live_since is None or self._last_probe is None:
            return FeedStatus(False, self._down_since, self._reason)
        if self._late(now):
            return FeedStatus(False, self._last_probe, "our probes stopped coming back "
                              "through RabbitMQ: a silent link?")
        return FeedStatus(True, self._live_since, checked_at=self._last_probe)

    def latest(self) -> Mapping[str, ReceivedHeartbeat]:
        """Forget a worker silent for ``forget_after`` seconds *of live feed* (an outage of
        our own makes nobody forgotten)."""
        feed = self.feed()
        if feed.live and feed.checked_at is not None:
            for worker_id, beat in list(self._beats.items()):
                if feed.checked_at - max(beat.received_at, feed.since) > self.forget_after:
                    del self._beats[worker_id]
        return dict(self._beats)

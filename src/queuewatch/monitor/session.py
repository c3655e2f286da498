"""One monitoring session for every face (the CLI, the console and the exporter).

:class:`MonitorSession` owns a :class:`~queuewatch.broker.management.ManagementClient`
(failover along ``management_urls``), a :class:`~queuewatch.broker.link.BrokerLink`
(failover along ``amqp_urls``, reconnects with backoff) and the heartbeat subscription: an
exclusive, auto-delete listener queue bound to ``heartbeat.#`` on the telemetry exchange,
declared again on every connection (a fresh name each time, so a dead connection the broker
has not noticed yet cannot lock it). Its :class:`~queuewatch.monitor.heartbeats.HeartbeatFeed`
is proven live by a probe sent round through the broker every second; worker silence is
judged against that (see :mod:`queuewatch.monitor.freshness`). After any fault the session
reconnects, subscribes again and the next snapshots rebuild the worker states.

Use::

    session = MonitorSession(settings, topology=topology)
    snap = await session.poll()          # raises a typed error when the API is unreachable
    session.link_state                   # management / AMQP / heartbeat feed, with since
    conn = await session.connection(10)  # for DLQ and operator actions (bounded wait)
    await session.aclose()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from queuewatch.aio import end_task, wait_for
from queuewatch.broker.connect import CONNECT_TIMEOUT
from queuewatch.broker.consumer import Subscription
from queuewatch.broker.errors import (
    ANY_BROKER_ERROR,
    CHANNEL_ERRORS,
    ChannelNotFound,
    close_channel,
)
from queuewatch.broker.link import BrokerLink
from queuewatch.broker.management import ManagementClient
from queuewatch.broker.types import Channel, Connection, DeliveryMode, ExchangeType, Message, Queue
from queuewatch.config import Settings
from queuewatch.errors import BrokerUnavailable, QueuewatchError
from queuewatch.events.queuestate import QueueStates
from queuewatch.monitor.core import (
    CONNECTION_COLUMNS,
    ErrorCallback,
    Monitor,
    SnapshotCallback,
    poll_forever,
)
from queuewatch.monitor.heartbeats import PROBE_INTERVAL, PROBE_TIMEOUT, HeartbeatFeed
from queuewatch.monitor.history import QueueHistory
from queuewatch.monitor.model import FeedStatus, Snapshot
from queuewatch.monitor.pacing import Pace
from queuewatch.telemetry import HEARTBEAT_KEY_PREFIX, LISTENER_QUEUE_PREFIX, listener_queue_name
from queuewatch.topology import Topology

log = logging.getLogger(__name__)

#: Most seconds a one-shot command listens for heartbeats before polling (workers beat
#: ~1/s); it stops as soon as every worker connection has beaten (:meth:`MonitorSession.listen`).
DEFAULT_LISTEN = 1.5
#: How a worker names its AMQP connection (``queuewatch-worker <worker id>``, see
#: :class:`queuewatch.worker.Worker`).
WORKER_CONNECTION_PREFIX = "queuewatch-worker "
#: The first poll of a long-running face waits this long for the heartbeat feed, so its
#: first snapshot has workers (seconds); later polls never wait for it.
FIRST_FEED_WAIT = 3.0
#: Default bound on the wait for an AMQP connection for an operator action (seconds).
ACTION_TIMEOUT = 10.0
#: What repairing the heartbeat route can raise (a broken or silent link, a refusal).
_REPAIR_ERRORS: tuple[type[BaseException], ...] = (QueuewatchError, *ANY_BROKER_ERROR)


@dataclass(frozen=True)
class LinkState:
    """What the session can reach right now, and since when."""

    management: bool
    """The last poll reached the management API (True before the first poll)."""
    management_since: float
    """Epoch seconds of the last change of ``management``."""
    management_error: str | None
    amqp: bool
    """The AMQP link is up."""
    amqp_address: str | None
    """The AMQP address in use (password masked)."""
    heartbeats: FeedStatus | None
    """The heartbeat feed (None: not listened to)."""


class MonitorSession:
    """See the module docstring. One event loop; not thread-safe."""

    def __init__(
        self, settings: Settings, *, topology: Topology | None = None, heartbeats: bool = True,
        all_vhosts: bool = False, clock: Callable[[], float] = time.time,
        name: str = "queuewatch-monitor", keep_history: bool = True,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.mgmt = ManagementClient(settings)
        self.link = BrokerLink(settings, name=name)
        self.stream_link = BrokerLink(settings, name=f"{name} streams")
        """The queue-state stream's reader, on a connection of its own: RabbitMQ may close a
        connection whose consumer reaches a stream that is not ready (see
        :mod:`queuewatch.broker.streams`), and the heartbeat feed must not go with it."""
        self.feed = HeartbeatFeed(clock) if heartbeats else None
        self.monitor = Monitor(self.mgmt, settings, clock=clock, topology=topology,
                               heartbeats=self.feed, all_vhosts=all_vhosts,
                               keep_history=keep_history)
        self.subscription: Subscription | None = None
        self._management_error: QueuewatchError | None = None
        self._management_since = clock()
        self._polls = 0
        self._probe_task: asyncio.Task[None] | None = None
        self._probe_now = asyncio.Event()
        self._listener: str | None = None
        """The listener queue of the current subscription (its bindings can be renewed)."""
        self._repaired_at = 0.0
        self._repair_task: asyncio.Task[None] | None = None
        self._started = False

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Start the link and the heartbeat subscription in the background (returns at once)."""
        if self._started:
            return
        self._started = True
        if self.feed is None:
            return
        self.link.on_up(self._ensure_exchange)
        self.subscription = self.link.subscribe(
            LISTENER_QUEUE_PREFIX + "*", self.feed.on_message, no_ack=True,
            declare=self._declare_listener, on_change=self._subscription_changed)
        # Paused queues and run-time limits (read only: the stream is made by the first change).
        self.queue_states = QueueStates(self.stream_link, self.settings.control_exchange)
        self.queue_states.reader.subscribe(passive=True)
        self.monitor.queue_states = self.queue_states.states
        await self.stream_link.start()
        await self.link.start()
        self._probe_task = asyncio.create_task(self._probe_loop(), name="heartbeat probe")

    async def open(self, timeout: float = CONNECT_TIMEOUT) -> None:
        """Start and wait until heartbeats flow; a one-shot command's error when they cannot:
        the broker's refusal at once, :class:`BrokerUnavailable` once every address failed."""
        await self.start()
        if self.feed is None:
            return
        deadline = time.monotonic() + timeout
        while not self.feed.feed().live:
            tried_all = len(self.link.attempts) >= len(self.link.addresses)
            if self.link.last_error is not None and (
                    tried_all or not isinstance(self.link.last_error, BrokerUnavailable)):
                raise self.link.last_error
            if time.monotonic() > deadline:
                why = self.feed.feed().reason or "no answer"
                raise BrokerUnavailable(f"no worker heartbeats within {timeout:g}s ({why})")
            await asyncio.sleep(0.05)

    async def wait_feed(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for the heartbeat feed; True when it is live."""
        deadline = time.monotonic() + timeout
        while self.feed is not None and not self.feed.feed().live:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return self.feed is not None

    async def listen(self, seconds: float) -> None:
        """Listen for worker heartbeats at most ``seconds``, and no longer than needed: done
        as soon as every queuewatch worker connection the broker shows has beaten. When it
        shows none (the management API lists a new connection a second or two late, and
        workers of other clients are not named so), or cannot list them, the whole time: a
        snapshot must not miss a worker that is there."""
        if self.feed is None or seconds <= 0:
            return
        deadline = time.monotonic() + seconds
        try:
            expected: set[str] | None = await self._worker_connection_ids()
        except QueuewatchError:
            expected = None
        while time.monotonic() < deadline:
            # (beats heard before the feed was proven live may be old: they do not count)
            since = self.feed.feed().since
            heard = {w for w, rb in self.feed.latest().items() if rb.received_at >= since}
            if expected and expected <= heard:
                return
            await asyncio.sleep(0.02)

    async def _worker_connection_ids(self) -> set[str]:
        """Worker ids of the open worker connections (named ``queuewatch-worker <id>``)."""
        ids = set()
        for c in await self.mgmt.connections(self.monitor.vhost, CONNECTION_COLUMNS):
            props = c.get("client_properties") or {}
            for name in (c.get("user_provided_name"), props.get("connection_name")):
                if isinstance(name, str) and name.startswith(WORKER_CONNECTION_PREFIX):
                    ids.add(name[len(WORKER_CONNECTION_PREFIX):])
        return ids

    async def aclose(self) -> None:
        task, self._probe_task = self._probe_task, None
        await end_task(task)
        repair, self._repair_task = self._repair_task, None
        await end_task(repair)
        await self.link.close()
        await self.stream_link.close()
        await self.mgmt.aclose()

    async def __aenter__(self) -> MonitorSession:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- polling ------------------------------------------------------------------------
    async def poll(self) -> Snapshot:
        """One snapshot; a typed error when the management API cannot be polled (the
        session remembers it in :attr:`link_state`)."""
        await self.start()
        if self._polls == 0 and self.feed is not None:
            await self.wait_feed(FIRST_FEED_WAIT)
        self._polls += 1
        try:
            snap = await self.monitor.poll()
        except QueuewatchError as exc:
            self._management(exc)
            raise
        self._management(None)
        if self.feed is not None and not self.link.alive:
            self.link.retry_now()  # the broker answers HTTP again: try AMQP now, not later
            self.stream_link.retry_now()
        return snap

    async def run(self, callback: SnapshotCallback, interval: float | None = None, *,
                  on_error: ErrorCallback | None = None, stop: asyncio.Event | None = None,
                  on_pace: Callable[[Pace], None] | None = None) -> None:
        """Poll forever, as :meth:`Monitor.run <queuewatch.monitor.core.Monitor.run>` (the
        pause stretches after a slow poll; ``on_pace`` hears each pause chosen)."""
        every = self.settings.poll_interval if interval is None else interval
        await poll_forever(self.poll, callback, every, on_error=on_error, stop=stop,
                           on_pace=on_pace)

    @property
    def history(self) -> QueueHistory:
        """Per-queue history (``session.history.get(name)``), oldest first."""
        return self.monitor.history

    @property
    def last(self) -> Snapshot | None:
        """The last good snapshot."""
        return self.monitor.last

    def _management(self, error: QueuewatchError | None) -> None:
        if (error is None) != (self._management_error is None):
            self._management_since = self.clock()
        self._management_error = error

    @property
    def link_state(self) -> LinkState:
        err = self._management_error
        return LinkState(
            management=err is None, management_since=self._management_since,
            management_error=None if err is None else str(err),
            amqp=self.link.alive, amqp_address=self.link.address,
            heartbeats=None if self.feed is None else self.feed.feed(),
        )

    # -- AMQP for actions ---------------------------------------------------------------
    async def connection(self, timeout: float = ACTION_TIMEOUT) -> Connection:
        """The session's live AMQP connection, waiting at most ``timeout`` for one (typed
        error after that). Callers open their own channels and must not close it."""
        await self.start()
        await self.link.start()
        return await self.link.ensure(timeout)

    # -- the heartbeat subscription -----------------------------------------------------
    async def _ensure_exchange(self, conn: Connection) -> None:
        """After every connect: the telemetry exchange exists (declared topic/durable if
        missing, as workers declare it). A refusal is logged, not a reason to reconnect."""
        name = self.settings.telemetry_exchange
        channel = await conn.channel()
        try:
            await channel.declare_exchange(name, passive=True)
        except ChannelNotFound:
            log.info("telemetry exchange %r missing; declaring it (topic, durable)", name)
            channel = await conn.channel()
            try:
                await channel.declare_exchange(name, ExchangeType.TOPIC, durable=True)
            except CHANNEL_ERRORS as exc:
                log.warning("cannot declare the telemetry exchange %r: %s", name, exc)
        finally:
            with contextlib.suppress(*ANY_BROKER_ERROR):
                if not channel.is_closed:
                    await channel.close()

    async def _declare_listener(self, channel: Channel) -> Queue:
        assert self.feed is not None
        queue = await channel.declare_queue(listener_queue_name(), exclusive=True,
                                            auto_delete=True, durable=False)
        await self._bind(queue)
        self._listener = queue.name
        return queue

    async def _bind(self, queue: Queue, timeout: float | None = None) -> None:
        assert self.feed is not None
        exchange = self.settings.telemetry_exchange
        await queue.bind(exchange, routing_key=HEARTBEAT_KEY_PREFIX + "#", timeout=timeout)
        await queue.bind(exchange, routing_key=self.feed.probe_key, timeout=timeout)

    def _route_broken(self) -> bool:
        """Our probes stopped coming back although the link and the subscription are up:
        the route between the telemetry exchange and our listener queue is gone (the
        exchange deleted, perhaps declared again: either way our bindings went with it,
        and no one tells a consumer). A silent link looks the same; repairing it then
        only costs a channel that times out."""
        assert self.feed is not None
        sub = self.subscription
        if sub is None or not sub.live or not self.link.alive or self.feed.feed().live:
            return False
        # (epoch seconds, as the subscription's own ``since``)
        return time.time() - max(sub.state.since, self._repaired_at) > PROBE_TIMEOUT

    async def _repair_route(self) -> None:
        """Declare the telemetry exchange (topic, durable: a no-op when it is there, as
        workers and ``queuewatch declare`` make it) and bind the listener queue to it again
        (idempotent): the probes, and the workers' beats, flow again. Every step is bounded:
        on a silent link it simply times out."""
        listener = self._listener
        if listener is None:
            return
        name = self.settings.telemetry_exchange
        log.info("heartbeat probes stopped coming back on a live link; declaring the "
                 "telemetry exchange %r if missing and binding %r to it again", name, listener)
        channel = await self.link.channel(timeout=PROBE_TIMEOUT)
        try:
            await channel.declare_exchange(name, ExchangeType.TOPIC, durable=True,
                                           timeout=PROBE_TIMEOUT)
            await self._bind(await channel.get_queue(listener, ensure=False), PROBE_TIMEOUT)
        finally:
            await close_channel(channel)

    async def _repair(self) -> None:
        try:
            await self._repair_route()
        except _REPAIR_ERRORS as exc:
            log.debug("heartbeat route not repaired: %s", exc)

    def _subscription_changed(self, sub: Subscription) -> None:
        if self.feed is None:
            return
        if sub.live:
            self._probe_now.set()  # prove the new subscription at once
        else:
            self.feed.lost(sub.state.reason or str(sub.state.cause))

    async def _probe_loop(self) -> None:
        """Send a probe round through the broker every PROBE_INTERVAL while subscribed."""
        assert self.feed is not None
        channel: Channel | None = None
        probe = Message(b"", delivery_mode=DeliveryMode.NOT_PERSISTENT,
                                 expiration=PROBE_TIMEOUT)
        while True:
            if self.subscription is not None and self.subscription.live and self.link.alive:
                try:
                    if channel is None or channel.is_closed:
                        channel = await self.link.channel(timeout=PROBE_TIMEOUT)
                    exchange = await channel.get_exchange(self.settings.telemetry_exchange,
                                                          ensure=False)
                    await wait_for(exchange.publish(probe, self.feed.probe_key),
                                           PROBE_TIMEOUT)
                except ANY_BROKER_ERROR as exc:
                    log.debug("heartbeat probe not sent: %s", exc)
                    channel = None
                repairing = self._repair_task is not None and not self._repair_task.done()
                if not repairing and self._route_broken():
                    # (a task of its own: the probes go on while it waits on a silent link)
                    self._repaired_at = time.time()
                    self._repair_task = asyncio.create_task(self._repair(),
                                                            name="heartbeat route repair")
            self._probe_now.clear()
            with contextlib.suppress(TimeoutError):
                await wait_for(self._probe_now.wait(), PROBE_INTERVAL)


@asynccontextmanager
async def open_monitor(
    settings: Settings,
    *,
    heartbeats: bool = True,
    listen: float = 0.0,
    topology: Topology | None = None,
    all_vhosts: bool = False,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[MonitorSession]:
    """A ready :class:`MonitorSession` for a command; with ``heartbeats`` it waits until
    heartbeats flow, then ``listen`` seconds so the first snapshot already has workers.
    Connection and credential problems surface as typed errors (exit 2 in the CLI)."""
    session = MonitorSession(settings, topology=topology, heartbeats=heartbeats,
                             all_vhosts=all_vhosts, clock=clock, name="queuewatch-cli",
                             keep_history=False)
    try:
        await session.open()
        if heartbeats and listen > 0:
            await session.listen(listen)
        yield session
    finally:
        await session.aclose()

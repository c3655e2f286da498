"""``BrokerLink``: one AMQP connection that knows when it died, comes back, and brings its
consumers back.

Shaped after aio-pika's robust connection, with what that lacks for a job system:

- **liveness that does not trust ``is_closed``**: aio-pika leaves ``is_closed`` False after
  the reader of a reset socket died; the link watches aiormq's own ``closing`` future and
  the reader, and a short AMQP heartbeat (``settings.heartbeat``) ends a silent link;
- **failover** along ``settings.amqp_addresses`` (the last address that worked first);
- **one reconnect policy** (:mod:`.policy`: backoff with full jitter and a cap), with every
  attempt's time recorded in :attr:`BrokerLink.attempts`;
- **consumers that come back**: a :class:`Subscription` is restored after a reconnect, after
  a broker-sent ``basic.cancel`` (queue deleted, its node down) and after its channel was
  closed by the broker (``consumer_timeout``), as soon as the queue is there again; its
  state (live or not, since when, why) is always readable.

Use::

    link = BrokerLink(settings, name="queuewatch-worker w1")
    sub = link.subscribe("jobs", on_message, prefetch=100)
    await link.start()                 # background supervisor; returns at once
    conn = await link.ensure(10)       # wait (bounded) for a live connection
    ...
    await link.close()
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractQueue
from aio_pika.message import IncomingMessage

from queuewatch.aio import end_task, wait_for
from queuewatch.broker.connect import CONNECT_TIMEOUT, connect_one
from queuewatch.broker.consumer import Callback, Subscription, Wrap
from queuewatch.broker.errors import (
    ANY_BROKER_ERROR,
    LINK_ERRORS,
    LINK_OR_AMQP_ERRORS,
    LinkLost,
    lost_unless_cancelled,
)
from queuewatch.broker.policy import ReconnectPolicy, policy_for
from queuewatch.config import Settings, mask_url
from queuewatch.errors import BrokerUnavailable, QueuewatchError

log = logging.getLogger(__name__)

#: How often the supervisor double-checks that the connection's reader is alive (seconds).
WATCHDOG_INTERVAL = 1.0
#: Default bound on how long :meth:`BrokerLink.channel` waits for a live link (seconds).
DEFAULT_WAIT = 30.0

OnUp = Callable[[AbstractConnection], Awaitable[None]]
Declare = Callable[[AbstractChannel], Awaitable[AbstractQueue]]


def connection_alive(conn: AbstractConnection | None) -> bool:
    """True only while the connection and its reader are really up (see module doc)."""
    if conn is None or conn.is_closed:
        return False
    transport = getattr(conn, "transport", None)
    raw = getattr(transport, "connection", None)
    if raw is None:
        return False
    return not raw.is_closed and bool(getattr(raw, "is_opened", True))


def is_blocked(conn: AbstractConnection | None) -> bool:
    """Whether the broker sent ``connection.blocked`` (a memory or disk alarm); aiormq keeps
    it in a private event."""
    if conn is None:
        return False
    transport = getattr(conn, "transport", None)
    raw = getattr(transport, "connection", None)
    event = getattr(raw, "_Connection__connection_unblocked", None)
    return isinstance(event, asyncio.Event) and not event.is_set()


class BrokerLink:
    """See the module docstring. Not thread-safe: one event loop."""

    def __init__(
        self,
        settings: Settings,
        *,
        vhost: str | None = None,
        name: str = "queuewatch",
        policy: ReconnectPolicy | None = None,
        rng: Callable[[], float] | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.settings = settings
        self.vhost = settings.effective_vhost if vhost is None else vhost
        self.name = name
        self.policy = policy or policy_for(settings.reconnect_max_delay)
        self._backoff = self.policy.backoff(rng)
        self.connect_timeout = connect_timeout
        self.addresses = settings.amqp_addresses
        self._next_address = 0
        self.connection: AbstractConnection | None = None
        self.address: str | None = None
        """The masked address of the current connection."""
        self.attempts: list[float] = []
        """Monotonic time of every connect attempt (to check the jitter)."""
        self.connects = 0
        """Successful connects (1 + reconnects)."""
        self.last_error: QueuewatchError | None = None
        self.failed_rounds = 0
        """Rounds of connect attempts (every address once) that found no broker."""
        self.up = asyncio.Event()
        self.lost_at: float | None = None
        """Epoch seconds when the link was last lost (None while it never was)."""
        self._lost = asyncio.Event()
        self._wake = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._on_up: list[OnUp] = []
        self._reported: set[str] = set()
        self.subscriptions: list[Subscription] = []

    # -- state ------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self.up.is_set() and connection_alive(self.connection)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def blocked(self) -> bool:
        """True while the broker blocks publishing on this link (resource alarm)."""
        return self.alive and is_blocked(self.connection)

    def retry_now(self) -> None:
        """Cut the current reconnect pause short, when the caller has news that the broker
        is back (its management API answers again). No effect while the link is up."""
        self._wake.set()

    def on_up(self, hook: OnUp) -> None:
        """Run ``hook(connection)`` after every (re)connect, before consumers are restored.
        A link error inside it counts as losing the link again."""
        self._on_up.append(hook)

    def subscribe(
        self, queue: str, callback: Callback, *, prefetch: int = 0,
        no_ack: bool = False, declare: Declare | None = None,
        on_change: Callable[[Subscription], None] | None = None,
        arguments: Callable[[], dict[str, Any]] | None = None,
        wrap: Wrap = IncomingMessage,
    ) -> Subscription:
        """A consumer of ``queue`` kept alive by the link (see :class:`Subscription`).
        ``declare(channel)`` makes the queue (an exclusive queue must be made again on every
        connection); without it the queue must exist (passive declare)."""
        sub = Subscription(self, queue, callback, prefetch=prefetch, no_ack=no_ack,
                           declare=declare, on_change=on_change, arguments=arguments,
                           wrap=wrap)
        self.subscriptions.append(sub)
        if self.alive and self.connection is not None:
            sub.restart_soon()
        elif self.last_error is not None:
            sub.link_down()  # made while the link cannot connect: say so, not "starting"
        return sub

    # -- running ----------------------------------------------------------------------
    async def start(self) -> None:
        """Start the supervisor (connect, watch, reconnect) in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._supervise(), name=f"link {self.name}")

    async def open(self, timeout: float = CONNECT_TIMEOUT, *,
                   rounds: int | None = None) -> AbstractConnection:
        """Start and wait for the first connection; raise the reason after ``timeout`` (or
        ``rounds``: see :meth:`ensure`)."""
        await self.start()
        return await self.ensure(timeout, rounds=rounds)

    async def ensure(self, timeout: float = DEFAULT_WAIT, *,
                     rounds: int | None = None) -> AbstractConnection:
        """A live connection, waiting at most ``timeout`` seconds for one.

        Raises the broker's refusal at once (credentials, vhost), else
        :class:`BrokerUnavailable` with the last reason after ``timeout``, or once ``rounds``
        rounds of connect attempts (every address once) have failed since this call: for a
        one-shot command, which should not wait out a broker that refused it."""
        if self._closed:
            raise LinkLost(f"the link {self.name!r} is closed")
        await self.start()
        deadline = time.monotonic() + timeout
        failed_before = self.failed_rounds
        while True:
            if self.alive and self.connection is not None:
                return self.connection
            if self.last_error is not None and not isinstance(self.last_error, BrokerUnavailable):
                raise self.last_error
            if (rounds is not None and self.failed_rounds - failed_before >= rounds
                    and self.last_error is not None):
                raise self.last_error
            left = deadline - time.monotonic()
            if left <= 0:
                why = f": {self.last_error}" if self.last_error else ""
                raise BrokerUnavailable(
                    f"no connection to RabbitMQ ({self._shown_addresses()}) within {timeout:g}s{why}")
            try:
                await wait_for(self.up.wait(), min(left, WATCHDOG_INTERVAL))
            except TimeoutError:
                pass
            if self.up.is_set() and not connection_alive(self.connection):
                self._mark_lost("reader gone")
                await asyncio.sleep(0)

    async def channel(self, *, confirms: bool = False, timeout: float = DEFAULT_WAIT) -> AbstractChannel:
        """A new channel on the live connection (waiting at most ``timeout`` for one)."""
        conn = await self.ensure(timeout)
        try:
            return await wait_for(
                conn.channel(publisher_confirms=confirms, on_return_raises=False), timeout)
        except TimeoutError as exc:
            # The caller's budget ran out (a busy event loop, a slow broker): no proof that the
            # link died, so every consumer on it must not be torn down for it. A dead or
            # silent link is judged by the close callbacks, the watchdog and the heartbeat.
            raise LinkLost(f"no channel on {self.address} within {timeout:g}s") from exc
        except LINK_ERRORS as exc:
            self._mark_lost(f"opening a channel failed: {exc}")
            raise LinkLost(f"the link to {self.address} broke: {exc}") from exc
        except asyncio.CancelledError as exc:
            lost = lost_unless_cancelled(exc, f"opening a channel on {self.address}")
            self._mark_lost(str(lost))
            raise lost from exc

    async def close(self) -> None:
        """Stop reconnecting, cancel every subscription, close the connection."""
        self._closed = True
        # Their channels go with the connection: closing each first costs a timeout apiece
        # on a silent link, and a worker has to exit within its grace.
        await asyncio.gather(*(sub.stop(close_channel=False) for sub in self.subscriptions))
        task, self._task = self._task, None
        await end_task(task)
        await self._drop()

    async def __aenter__(self) -> BrokerLink:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- supervisor -------------------------------------------------------------------
    def _mark_lost(self, why: str) -> None:
        if self.up.is_set() and not self._closed:
            log.warning("link %s to %s lost (%s); reconnecting", self.name, self.address, why)
        if self.up.is_set():
            self.lost_at = time.time()
        self.up.clear()
        self._lost.set()

    async def _supervise(self) -> None:
        first = True
        while not self._closed:
            if not first:
                # Jittered pause before the first attempt too: a fleet that lost the same
                # node must not knock on the next one in step.
                self._wake.clear()
                await self._backoff.sleep(self._wake)
            first = False
            conn = await self._connect_round()
            if conn is None:
                self.failed_rounds += 1
                self._consumers_down()  # (from start-up on too: why they do not consume)
                continue
            self._backoff.reset()
            try:
                for hook in self._on_up:
                    await wait_for(hook(conn), self.connect_timeout)
            except LINK_OR_AMQP_ERRORS as exc:
                log.warning("link %s: setting up after connect failed: %s", self.name, exc)
                await self._drop()
                self._consumers_down()
                continue
            self.up.set()
            for sub in self.subscriptions:
                sub.restart_soon()
            await self._watch(conn)
            self._consumers_down()
            await self._drop()

    def _consumers_down(self) -> None:
        for sub in self.subscriptions:
            sub.link_down()

    async def _connect_round(self) -> AbstractConnection | None:
        """Try every address once, starting with the last good one."""
        n = len(self.addresses)
        refusal: QueuewatchError | None = None
        for i in range(n):
            if self._closed:
                return None
            index = (self._next_address + i) % n
            address = self.addresses[index]
            self.attempts.append(time.monotonic())
            try:
                conn = await connect_one(
                    self.settings, address, self.vhost, timeout=self.connect_timeout,
                    client_properties={"connection_name": self.name},
                )
            except QueuewatchError as exc:
                if str(exc) not in self._reported:  # once per outage, not once per attempt
                    self._reported.add(str(exc))
                    log.warning("link %s: %s", self.name, exc)
                if not isinstance(exc, BrokerUnavailable):
                    refusal = refusal or exc  # the broker's "no" says more than a dead node
                self.last_error = refusal or exc
                continue
            self._next_address = index
            self.connection, self.address = conn, mask_url(address)
            self.last_error = None
            self._reported.clear()
            self.connects += 1
            self._lost.clear()
            conn.close_callbacks.add(lambda *_: self._mark_lost("connection closed"))
            raw = getattr(conn.transport, "connection", None)
            if raw is not None:
                raw.closing.add_done_callback(lambda *_: self._mark_lost("connection closed"))
            if self.connects > 1:
                log.warning("link %s reconnected to %s", self.name, self.address)
            return conn
        return None

    async def _watch(self, conn: AbstractConnection) -> None:
        """Return when the link is lost (or closed)."""
        while not self._closed and not self._lost.is_set():
            try:
                await wait_for(self._lost.wait(), WATCHDOG_INTERVAL)
            except TimeoutError:
                if not connection_alive(conn):
                    self._mark_lost("reader gone")
        self.up.clear()

    async def _drop(self) -> None:
        conn, self.connection = self.connection, None
        self.up.clear()
        if conn is None:
            return
        try:
            await wait_for(conn.close(), 2.0)
        except TimeoutError:
            # A silent link: the close got no answer, and aio-pika, its transport already
            # let go, would say the connection is open for good (and close it again when
            # collected). A second close only marks it closed.
            try:
                await wait_for(conn.close(), 0.5)
            except ANY_BROKER_ERROR as exc:
                log.debug("closing a silent connection: %s", exc)
        except ANY_BROKER_ERROR as exc:
            log.debug("closing a dead connection: %s", exc)

    def _shown_addresses(self) -> str:
        return ", ".join(mask_url(a) for a in self.addresses)


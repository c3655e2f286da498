"""Deadlines for the DLQ actions: every wait ends, and a dead link ends the action promptly.

Nothing an action waits for (a delivery, a confirm, an ack written out, a channel opened or
closed) may block it for ever. A :class:`Watch` looks after the connections an action uses
and ends the wait it guards (:meth:`Watch.guard`) with :class:`Interrupted`, naming why,
as soon as

* a connection is gone. aio-pika's ``is_closed`` is not enough: it can stay False after
  the link died, so the aiormq connection underneath is asked too (closed, or its reader or
  writer task ended);
* the broker closed one of the action's channels, or cancelled its consumer (the queue was
  deleted, or its node went down: RabbitMQ sends ``basic.cancel``);
* nothing moved for a few seconds and a probe (a request on the consuming connection, which
  a memory alarm does not block) got no answer within :data:`PROBE_TIMEOUT`: a silent link
  (a black hole, a half-open TCP connection);
* nothing moved for ``stall`` seconds while the action waited on the broker (no delivery, no
  confirm), whatever the probe says: a blocked broker (a memory or disk alarm stops
  publishers) or a silent publishing link. AMQP heartbeats would end a silent link too, but
  only after about three heartbeat intervals.

The caller then settles what it can within further deadlines and reports what moved.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from queuewatch.aio import wait_for
from queuewatch.broker import errors as broker_errors
from queuewatch.broker import wire
from queuewatch.broker.link import connection_alive
from queuewatch.broker.wire import Connection
from queuewatch.errors import BrokerError

#: Longest time without a delivery or a confirm while waiting on the broker (seconds).
STALL_TIMEOUT = 30.0
#: Longest wait for one request/answer on a channel (open, declare, qos, consume).
OP_TIMEOUT = 10.0
#: Longest wait for a channel or connection to close (the broker requeues unacked
#: deliveries whichever way a channel ends, so giving up on a clean close loses nothing).
CLOSE_TIMEOUT = 2.0
#: How often the watch looks at the connections.
POLL_SECONDS = 0.2
#: After this long without progress the watch asks RabbitMQ something (a probe) ...
PROBE_AFTER = 4.0
#: ... and calls the link silent when there is no answer within this long.
PROBE_TIMEOUT = 5.0


class Interrupted(BrokerError):
    """A DLQ action stopped early: the link died or went silent, or the broker cancelled
    its consumer or closed its channel. ``str()`` says which."""

    exit_code = 1


def link_problem(connection: Connection) -> str | None:
    """Why ``connection`` cannot carry anything any more, or None while it is up (the
    broker edge's :func:`~queuewatch.broker.link.connection_alive` decides)."""
    if connection_alive(connection):
        return None
    raw = getattr(getattr(connection, "transport", None), "connection", None)
    return f"the link to RabbitMQ was lost{_cause(raw)}"


def describe(exc: BaseException, role: str) -> str:
    """One line for a failure of the ``role`` channel (its link broke, or RabbitMQ closed it)."""
    if isinstance(exc, wire.ChannelClosed):
        return f"the link to RabbitMQ broke (the {role} channel is closed)"
    if broker_errors.is_link_error(exc):
        return f"the link to RabbitMQ was lost ({type(exc).__name__}: {exc})"
    return f"RabbitMQ closed the {role} channel: {type(exc).__name__}: {exc}"


def _cause(raw: Any) -> str:
    closing = getattr(raw, "_closing", None)
    if isinstance(closing, asyncio.Future) and closing.done() and not closing.cancelled():
        exc = closing.exception()
        if exc is not None and str(exc):
            return f" ({type(exc).__name__}: {exc})"
    return ""


class Watch:
    """Liveness and deadlines for the connections (and channels) of one DLQ action."""

    def __init__(
        self, *connections: Connection, stall: float = STALL_TIMEOUT,
        probe: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """``probe``: a cheap request that proves the link answers (e.g. a passive declare)."""
        self.connections = connections
        self.stall = stall
        self.probe = probe
        self.reason: str | None = None
        """Why the action must stop (the first reason found), or None."""
        self.cancelled_queue: str | None = None
        """The queue whose consumer the broker cancelled, if it did."""
        self.consumer_cancelled = False
        """RabbitMQ cancelled a consumer of the action (its queue deleted, or its node down)."""
        self.link_lost = False
        """A connection died or went silent: nothing more will come over it."""
        self._last_progress = time.monotonic()
        self._timeouts: list[asyncio.Timeout] = []
        self._closing = False

    # -- signals ---------------------------------------------------------------------------
    def progress(self) -> None:
        """Something moved (a delivery, a confirm): the stall clock starts again."""
        self._last_progress = time.monotonic()

    def fail(self, reason: str, link_lost: bool = False) -> None:
        """Stop the guarded wait now (the first reason is kept until the next guard).
        ``link_lost``: the reason is a dead or silent link (waiting more is pointless)."""
        self.link_lost = self.link_lost or link_lost
        if self.reason is None:
            self.reason = reason
        loop = asyncio.get_running_loop()
        for cm in self._timeouts:
            if not cm.expired():
                cm.reschedule(loop.time())

    def check(self) -> str | None:
        """Look at the connections now; fail on a dead one. Returns the reason, if any."""
        if self.reason is None:
            for conn in self.connections:
                problem = link_problem(conn)
                if problem is not None:
                    self.fail(problem, link_lost=True)
                    break
        return self.reason

    def attach(self, raw: Any, role: str) -> None:
        """Watch an aiormq channel: the broker closing it, or cancelling a consumer on it."""

        def closed(fut: asyncio.Future[Any]) -> None:
            if self._closing or fut.cancelled():
                return
            exc = fut.exception()
            if exc is not None:
                self.fail(describe(exc, role), link_lost=broker_errors.is_link_error(exc))

        raw.closing.add_done_callback(closed)

        async def cancelled(frame: Any) -> None:
            self.consumer_cancelled = True
            self.fail(f"RabbitMQ cancelled the consumer on {self.cancelled_queue or 'the queue'!r} "
                      "(the queue was deleted, or its node went down)")

        raw.on_consumer_cancel_callbacks.add(cancelled)

    def consuming(self, queue: str) -> None:
        """Name the queue the action consumes (for the cancel report)."""
        self.cancelled_queue = queue

    def closing(self) -> None:
        """The action closes its own channels now: that is not a failure."""
        self._closing = True

    # -- guarding a wait ---------------------------------------------------------------------
    @asynccontextmanager
    async def guard(self, stall: float | None = None) -> AsyncIterator[None]:
        """Run the body until it ends, or until the watch fails (:class:`Interrupted`).

        ``stall``: this guard's limit on time without progress (default: the watch's).
        A reason found by an earlier guard (a cancelled consumer) does not stop this one;
        a dead connection does."""
        self.reason = None
        if self.check() is not None:
            raise Interrupted(self.reason or "")
        limit = self.stall if stall is None else stall
        self.progress()
        poller = asyncio.create_task(self._poll(limit))
        cm = asyncio.timeout(None)
        self._timeouts.append(cm)
        try:
            async with cm:
                yield
        except TimeoutError as exc:
            if cm.expired() and self.reason is not None:
                raise Interrupted(self.reason) from exc
            raise
        finally:
            self._timeouts.remove(cm)
            poller.cancel()

    async def _poll(self, limit: float) -> None:
        probed_at = 0.0
        while self.reason is None:
            await asyncio.sleep(POLL_SECONDS)
            if self.check() is not None:
                return
            idle = time.monotonic() - self._last_progress
            if self.probe is not None and idle > PROBE_AFTER and probed_at < self._last_progress:
                probed_at = time.monotonic()
                # Never cancelled (a request cancelled half-way leaves aiormq's channel in a
                # bad state): on no answer it is left to end with the link.
                probe = asyncio.ensure_future(self.probe())
                probe.add_done_callback(_retrieve)
                done, _ = await asyncio.wait({probe}, timeout=PROBE_TIMEOUT)
                if not done:
                    self.fail(f"no answer from RabbitMQ within {PROBE_TIMEOUT:g}s (the link "
                              "went silent)", link_lost=True)
                    return
                exc = probe.exception()
                if isinstance(exc, BrokerError):
                    self.fail(str(exc), link_lost="deleted" not in str(exc))
                    return
                continue
            if idle > limit:
                self.fail(f"no answer from RabbitMQ for {limit:g}s (the link went silent, or "
                          "the broker blocks publishers: a memory or disk alarm)")
                return


def _retrieve(fut: asyncio.Future[object]) -> None:
    """Mark a background task's outcome as seen (its failure is reported another way)."""
    if not fut.cancelled():
        fut.exception()


async def bounded(aw: Any, timeout: float, what: str) -> Any:
    """Await ``aw`` for at most ``timeout`` seconds; :class:`Interrupted` after that."""
    try:
        return await wait_for(aw, timeout)
    except TimeoutError as exc:
        raise Interrupted(f"no answer from RabbitMQ within {timeout:g}s to {what} "
                          "(the link went silent?)") from exc

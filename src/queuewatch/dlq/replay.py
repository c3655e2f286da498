"""Replay: send dead letters back to their original route without losing any.

The one rule: a dead letter is acked only after its republish is confirmed by the broker.
Consumed-but-unacked deliveries go back to the DLQ (at their original positions) when the
channel closes, whether the replay ends normally, fails, or its process is killed; a kill
after a confirm and before the ack gives a duplicate, never a loss.

Publishes are pipelined: up to ``window`` republishes are in flight, each confirmed
asynchronously; acks go out with ``multiple=True`` while nothing is held back.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Literal

import aiormq
from aio_pika.abc import AbstractConnection
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from queuewatch import envelope as env
from queuewatch.dlq.acker import Acker, AckWriter
from queuewatch.dlq.channel import (
    IDLE_TIMEOUT,
    MAX_PREFETCH,
    consume,
    delivery_tag,
    exchange_exists,
    queue_depth,
    raw_channel,
)
from queuewatch.dlq.decode import for_publish
from queuewatch.dlq.filters import DeadLetterFilter
from queuewatch.dlq.model import DeadLetter, Route
from queuewatch.dlq.peek import ProgressFn, iterate, to_dead_letter
from queuewatch.errors import BrokerError

DEFAULT_MAX_REPLAYS = 3
"""A dead letter replayed this many times is refused unless forced (poison loop guard)."""
DEFAULT_WINDOW = 1000
"""Republishes in flight at once (unconfirmed)."""
PROGRESS_EVERY = 500
#: Death details removed on replay: the job is alive again. The original route, first
#: failure time and replay count stay.
STRIP_ON_REPLAY = (
    env.H_DEAD_REASON, env.H_ERROR_TYPE, env.H_ERROR_MESSAGE, env.H_TRACEBACK,
    env.H_DEAD_AT_MS, env.H_WORKER, env.H_DEAD_QUEUE,
)

SkipWhy = Literal["replay-limit", "unroutable", "no-route", "publish-failed"]


@dataclass(frozen=True)
class Skipped:
    """A matching dead letter that was NOT replayed and stays in the DLQ."""

    job_id: str | None
    position: int
    why: SkipWhy
    detail: str = ""


@dataclass(frozen=True)
class ReplayResult:
    queue: str
    dry_run: bool
    scanned: int
    """Dead letters looked at."""
    matched: int
    """Dead letters the filter selected."""
    replayed: int
    """Republished, confirmed and removed from the DLQ (in a dry run: would be)."""
    skipped: tuple[Skipped, ...] = ()
    elapsed: float = 0.0
    error: str | None = None
    """Why the replay stopped early, if it did (everything not replayed stays in the DLQ)."""
    via: Literal["messages", "shovel"] = "messages"
    """Republished message by message, or moved by a RabbitMQ shovel (then message by
    message for what the shovel held back)."""

    @property
    def outcome(self) -> Literal["ok", "partial", "error"]:
        if self.error is not None:
            return "partial" if self.replayed else "error"
        return "partial" if self.skipped else "ok"

    @property
    def rate(self) -> float:
        return self.replayed / self.elapsed if self.elapsed > 0 else 0.0

    def count(self, why: SkipWhy) -> int:
        return sum(1 for s in self.skipped if s.why == why)


def replay_properties(props: Any, dl: DeadLetter, user: str | None) -> Basic.Properties:
    """The republished message: same body and properties, fresh attempts, replay count + 1."""
    headers = {k: for_publish(v) for k, v in (props.headers or {}).items() if k not in STRIP_ON_REPLAY}
    headers.pop(env.LEGACY_REPLAY_COUNT, None)
    headers[env.H_REPLAY_COUNT] = dl.replay_count + 1
    if env.H_ATTEMPT in headers:
        headers[env.H_ATTEMPT] = 1
    user_id = props.user_id if props.user_id and props.user_id == user else None
    return Basic.Properties(
        content_type=props.content_type, content_encoding=props.content_encoding,
        headers=headers, delivery_mode=props.delivery_mode, priority=props.priority,
        correlation_id=props.correlation_id, reply_to=props.reply_to,
        expiration=props.expiration, message_id=props.message_id, timestamp=props.timestamp,
        message_type=props.message_type, user_id=user_id, app_id=props.app_id,
    )


def classify(dl: DeadLetter, force: bool, max_replays: int) -> tuple[Route | None, Skipped | None]:
    """The route to replay ``dl`` on, or why it must stay."""
    if not force and dl.replay_count >= max_replays:
        return None, Skipped(dl.job_id, dl.position, "replay-limit",
                             f"replayed {dl.replay_count} times (limit {max_replays}; force to override)")
    route = dl.death.route
    if route is None:
        return None, Skipped(dl.job_id, dl.position, "no-route", "no original route in the headers")
    return route, None


@dataclass
class ReplayOptions:
    flt: DeadLetterFilter = field(default_factory=DeadLetterFilter)
    dry_run: bool = False
    rate: float | None = None
    """At most this many republishes per second (None: as fast as confirms allow)."""
    force: bool = False
    max_replays: int = DEFAULT_MAX_REPLAYS
    limit: int | None = None
    """Look at no more than this many dead letters (from the head)."""
    window: int = DEFAULT_WINDOW
    user: str | None = None
    """The AMQP user: a ``user_id`` property naming someone else is dropped (the broker
    refuses to relay it)."""
    idle_timeout: float = IDLE_TIMEOUT


async def dry_run(
    connection: AbstractConnection, queue: str, opts: ReplayOptions, progress: ProgressFn | None
) -> ReplayResult:
    start = time.monotonic()
    scanned = matched = would = 0
    skipped: list[Skipped] = []
    async with aclosing(iterate(connection, queue, opts.limit, progress)) as stream:
        async for dl, _message in stream:
            scanned += 1
            if not opts.flt.matches(dl):
                continue
            matched += 1
            _route, skip = classify(dl, opts.force, opts.max_replays)
            if skip is None:
                would += 1
            else:
                skipped.append(skip)
    return ReplayResult(queue, True, scanned, matched, would, tuple(skipped),
                        time.monotonic() - start)


class _Replayer:
    def __init__(
        self, rin: Any, rout: Any, opts: ReplayOptions, pub: AbstractConnection
    ) -> None:
        self.rin, self.rout, self.opts, self.pub = rin, rout, opts, pub
        self.exchanges: dict[str, bool] = {}
        self.ack_writer = AckWriter(rin)
        self.acker = Acker(self.ack_writer)
        self.window = asyncio.Semaphore(max(opts.window, 1))
        self.in_flight: dict[str, asyncio.Future[Any]] = {}
        self.tasks: set[asyncio.Future[Any]] = set()
        self.skipped: list[Skipped] = []
        self.scanned = self.matched = self.replayed = 0
        self.prefetch = 0
        self.started = time.monotonic()

    def _track(self, fut: asyncio.Future[Any]) -> None:
        self.tasks.add(fut)
        fut.add_done_callback(self.tasks.discard)

    def hold(self, tag: int, skip: Skipped | None = None) -> None:
        self.acker.hold(tag)
        if skip is not None:
            self.skipped.append(skip)

    async def keep_flowing(self, queue: str) -> Any:
        """Raise the (channel-wide) prefetch as held deliveries pile up, so they never
        starve the consumer."""
        want = self.acker.held + 2 * self.opts.window
        want = 0 if want > MAX_PREFETCH else want
        if self.prefetch != 0 and (want == 0 or want > self.prefetch):
            self.prefetch = want
            await self.rin.basic_qos(prefetch_count=want, global_=True)

    async def throttle(self, n: int) -> None:
        if self.opts.rate:
            due = self.started + n / self.opts.rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    async def handle(self, position: int, message: DeliveredMessage) -> None:
        tag = delivery_tag(message)
        dl = to_dead_letter(position, message)
        self.scanned += 1
        if not self.opts.flt.matches(dl):
            self.hold(tag)
            return
        self.matched += 1
        route, skip = classify(dl, self.opts.force, self.opts.max_replays)
        if route is None:
            self.hold(tag, skip)
            return
        if route.exchange not in self.exchanges:
            self.exchanges[route.exchange] = await exchange_exists(self.pub, route.exchange)
        if not self.exchanges[route.exchange]:
            self.hold(tag, Skipped(dl.job_id, dl.position, "unroutable",
                                   f"exchange {route.exchange!r} does not exist"))
            return
        props = replay_properties(message.header.properties, dl, self.opts.user)
        await self.window.acquire()
        await self.throttle(self.matched)
        mid = props.message_id
        if mid and mid in self.in_flight:
            # aiormq matches returned messages by message_id: one copy in flight at a time.
            await asyncio.wait([self.in_flight[mid]])
        fut = asyncio.ensure_future(self.rout.basic_publish(
            bytes(message.body), exchange=route.exchange, routing_key=route.routing_key,
            properties=props, mandatory=True, wait=False,
        ))
        if mid:
            self.in_flight[mid] = fut
        self._track(fut)
        fut.add_done_callback(lambda f: self._confirmed(f, tag, dl, route, mid))

    def _confirmed(
        self, fut: asyncio.Future[Any], tag: int, dl: DeadLetter, route: Route, mid: str | None
    ) -> None:
        self.window.release()
        if mid and self.in_flight.get(mid) is fut:
            del self.in_flight[mid]
        if fut.cancelled():
            self.hold(tag, Skipped(dl.job_id, dl.position, "publish-failed", "cancelled"))
            return
        exc = fut.exception()
        if exc is None:
            self.replayed += 1
            self.acker.done(tag)
        elif isinstance(exc, aiormq.exceptions.PublishError):
            self.hold(tag, Skipped(dl.job_id, dl.position, "unroutable",
                                   f"{route.describe()} matched no queue"))
        else:
            self.hold(tag, Skipped(dl.job_id, dl.position, "publish-failed",
                                   f"{type(exc).__name__}: {exc}"))

    def abort(self) -> None:
        self.ack_writer.abort()
        for task in list(self.tasks):
            task.cancel()

    async def drain(self) -> None:
        """Wait for every republish to settle, then send the remaining acks."""
        while self.tasks:
            await asyncio.wait(list(self.tasks))
        await self.ack_writer.flush()


async def replay(
    connection: AbstractConnection, queue: str, opts: ReplayOptions,
    progress: ProgressFn | None = None, publish_connection: AbstractConnection | None = None,
) -> ReplayResult:
    """Replay the dead letters of ``queue`` that ``opts.flt`` selects (see module doc).

    Republish on ``publish_connection`` when given: RabbitMQ's flow control throttles a
    publishing connection by not reading from it, which would also hold back the acks that
    let more dead letters flow in. Consuming and publishing on one connection is several
    times slower."""
    if opts.dry_run:
        return await dry_run(connection, queue, opts, progress)
    total = await queue_depth(connection, queue)
    target = total if opts.limit is None else min(total, opts.limit)
    error: str | None = None
    if target <= 0:
        return ReplayResult(queue, False, 0, 0, 0)
    pub = publish_connection or connection
    async with raw_channel(connection) as rin, raw_channel(pub, confirms=True) as rout:
        r = _Replayer(rin, rout, opts, pub)
        r.prefetch = min(target, 2 * max(opts.window, 1), MAX_PREFETCH)
        inbox, _ctag = await consume(rin, queue, r.prefetch)
        me = asyncio.current_task()
        try:
            for position in range(target):
                if me is not None and me.cancelling():
                    # a library under us swallowed a cancellation (asyncio in 3.11 can)
                    raise asyncio.CancelledError
                message = await inbox.get(opts.idle_timeout)
                if message is None:
                    break
                await r.handle(position, message)
                await r.keep_flowing(queue)
                if progress is not None and (position + 1) % PROGRESS_EVERY == 0:
                    progress(position + 1, target)
        except (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError,
                ConnectionError) as exc:
            error = f"replay stopped: {type(exc).__name__}: {exc} (unreplayed dead letters stay)"
        except asyncio.CancelledError:
            # Cancelled (e.g. the TUI worker): unacked dead letters return to the DLQ when
            # the channel closes; republished ones may be duplicated, none is lost.
            r.abort()
            raise
        try:
            await r.drain()
        except (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError,
                ConnectionError) as exc:
            error = error or (f"acking replayed dead letters failed: {exc} (they stay in the "
                              "DLQ and were also replayed: duplicates, no loss)")
        if progress is not None:
            progress(r.scanned, target)
    if error is not None and r.replayed == 0 and r.scanned == 0:
        raise BrokerError(error)
    return ReplayResult(queue, False, r.scanned, r.matched, r.replayed, tuple(r.skipped),
                        time.monotonic() - r.started, error)


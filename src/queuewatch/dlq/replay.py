"""Replay: send dead letters back to their original route without losing any.

The one rule: a dead letter is acked only after its republish is confirmed by the broker.
Consumed-but-unacked deliveries go back to the DLQ (at their original positions) when the
channel closes, whether the replay ends normally, fails, or its process is killed; a kill
after a confirm and before the ack gives a duplicate, never a loss.

Publishes are pipelined: up to ``window`` republishes are in flight, each confirmed
asynchronously; acks go out with ``multiple=True`` while nothing is held back.

Every wait has a deadline (:mod:`queuewatch.dlq.watch`): a cut or silent link, a DLQ
deleted under the replay (RabbitMQ cancels its consumer) or a broker that stops answering
ends the replay with a :class:`ReplayResult` whose ``error`` says why, what was replayed,
what was in doubt (republished without a confirm, or confirmed without a sent ack: it stays
in the DLQ and may also have reached its queue: a duplicate, never a loss) and what was not
looked at.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass, field
from typing import Any, Literal

from queuewatch import envelope as env
from queuewatch.broker import wire
from queuewatch.broker.errors import is_link_error, raise_if_cancelled
from queuewatch.broker.fieldcodec import ENCODE_ERRORS, sendable_name
from queuewatch.broker.publish import Outcome, classify_failure
from queuewatch.broker.wire import Connection, Delivery
from queuewatch.dlq.channel import (
    IDLE_TIMEOUT,
    Inbox,
    delivery_tag,
    exchange_exists,
    publish,
    queue_counts,
    queue_depth,
    raw_channel,
    still_there,
)
from queuewatch.dlq.decode import for_publish
from queuewatch.dlq.filters import DeadLetterFilter
from queuewatch.dlq.model import DeadLetter, Route, message_id_for_copy
from queuewatch.dlq.peek import ProgressFn, iterate, to_dead_letter
from queuewatch.dlq.readers import ReadChannel, Readers
from queuewatch.dlq.targets import Keep
from queuewatch.dlq.watch import (
    CLOSE_TIMEOUT,
    STALL_TIMEOUT,
    Interrupted,
    Watch,
    describe,
)
from queuewatch.errors import NotFound

DEFAULT_MAX_REPLAYS = 3
"""A dead letter replayed this many times is refused unless forced (poison loop guard)."""
DEFAULT_WINDOW = 1000
"""Republishes in flight at once (unconfirmed)."""
PROGRESS_EVERY = 500
SETTLE_STALL = 10.0
"""After the replay stopped: longest wait without a confirm for what is still in flight."""
#: Death details removed on replay: the job is alive again. The original route, first
#: failure time and replay count stay. ``x-delivery-count`` is the quorum DLQ's count of
#: reads, not the job's.
STRIP_ON_REPLAY = (
    env.H_DEAD_REASON, env.H_ERROR_TYPE, env.H_ERROR_MESSAGE, env.H_TRACEBACK,
    env.H_DEAD_AT_MS, env.H_WORKER, env.H_DEAD_QUEUE, env.H_DEAD_REASON_PLAIN,
    env.H_ERROR_TYPE_PLAIN, env.H_ERROR_NAME_PLAIN, "x-delivery-count",
)

SkipWhy = Literal["replay-limit", "unroutable", "no-route", "publish-failed", "unpublishable",
                  "drops-head", "unchecked", "stopped"]
"""``unpublishable``: the AMQP library cannot send it (a route name or a header value it
cannot encode; the detail says which); nothing was sent and the replay went on.
``drops-head``: its route reaches a queue whose length limit drops the oldest messages
(:mod:`queuewatch.dlq.targets`): the republish would be confirmed, then dropped.
``unchecked``: whether its route reaches such a queue could not be told (the management API
could not be read): kept rather than risk it.
``stopped``: republished (or about to be) when the replay stopped early, without a
confirm: it stays in the DLQ and may also have arrived (counted in ``in_doubt``)."""
#: The reasons a dead letter is kept, in report order (``stopped`` is counted as in doubt).
KEPT_REASONS: tuple[SkipWhy, ...] = (
    "replay-limit", "unroutable", "no-route", "publish-failed", "unpublishable", "drops-head",
    "unchecked")


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
    total: int = 0
    """Dead letters in the DLQ (up to the limit) when the replay started."""
    in_doubt: int = 0
    """An upper bound of the dead letters that may be both in their queue and still in the
    DLQ, when it stopped early (republished without a confirm, or confirmed and acked with
    nothing proving the ack arrived before the link broke) or a shovel's last acks were lost
    as it ended (they are at the DLQ's head, :func:`queuewatch.dlq.shovel.given_back`):
    duplicates, never losses."""

    dlq_deleted: bool = False
    """The DLQ was deleted while the replay ran (what was still in it went with it)."""
    unchecked_sent: int = 0
    """Dead letters let through (in a dry run: counted) although whether their route reaches
    a queue that drops its head could not be read: the operator vouched for it
    (``--skip-limit-check``, :class:`queuewatch.dlq.targets.DropsHead`)."""
    link_lost: bool = False
    """It stopped because the link to RabbitMQ broke (or the broker went away). ``in_doubt``
    bounds the duplicates of a cut link or a clean broker stop; a broker that crashed
    (kill -9, power cut) may also forget acks it had not written to disk: the dead letters
    acked since then come back to the DLQ (measured: all 4,054 replayed before a kill -9,
    with 1,251 reported in doubt). Duplicates, never losses."""

    @property
    def not_scanned(self) -> int:
        """Dead letters never looked at (they stay in the DLQ)."""
        return max(self.total - self.scanned, 0)

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


def replay_properties(props: Any, dl: DeadLetter, user: str | None) -> wire.Properties:
    """The republished message: same body and properties, fresh attempts, replay count + 1."""
    headers = {k: for_publish(v) for k, v in (props.headers or {}).items() if k not in STRIP_ON_REPLAY}
    headers.pop(env.LEGACY_REPLAY_COUNT, None)
    headers[env.H_REPLAY_COUNT] = dl.replay_count + 1
    if env.H_ATTEMPT in headers:
        headers[env.H_ATTEMPT] = 1
    user_id = props.user_id if props.user_id and props.user_id == user else None
    return wire.Properties(
        content_type=props.content_type, content_encoding=props.content_encoding,
        headers=headers, delivery_mode=props.delivery_mode, priority=props.priority,
        correlation_id=props.correlation_id, reply_to=props.reply_to,
        expiration=props.expiration,
        message_id=message_id_for_copy(props.message_id, props.headers, dl.body),
        timestamp=props.timestamp, message_type=props.message_type, user_id=user_id,
        app_id=props.app_id,
    )


def moved_properties(props: Any, user: str | None) -> wire.Properties:
    """A moved message: the same properties and headers (only a ``user_id`` naming someone
    else is dropped: the broker refuses to relay it)."""
    headers = {k: for_publish(v) for k, v in (props.headers or {}).items()
               if k != "x-delivery-count"}
    user_id = props.user_id if props.user_id and props.user_id == user else None
    return wire.Properties(
        content_type=props.content_type, content_encoding=props.content_encoding,
        headers=headers or None, delivery_mode=props.delivery_mode, priority=props.priority,
        correlation_id=props.correlation_id, reply_to=props.reply_to,
        expiration=props.expiration, message_id=props.message_id, timestamp=props.timestamp,
        message_type=props.message_type, user_id=user_id, app_id=props.app_id,
    )


def classify(dl: DeadLetter, force: bool, max_replays: int,
             to: Route | None = None) -> tuple[Route | None, Skipped | None]:
    """The route to replay ``dl`` on, or why it must stay (``to``: a move, every message
    goes there and no replay count applies)."""
    if to is not None:
        return to, None
    if not force and dl.replay_count >= max_replays:
        return None, Skipped(dl.job_id, dl.position, "replay-limit",
                             f"replayed {dl.replay_count} times (limit {max_replays}; force to override)")
    route = dl.death.route
    if route is None:
        return None, Skipped(dl.job_id, dl.position, "no-route", "no original route in the headers")
    why = unsendable_route(route)
    if why is not None:
        return None, Skipped(dl.job_id, dl.position, "unpublishable", f"{route.describe()}: {why}")
    return route, None


def unsendable_route(route: Route) -> str | None:
    """Why ``route`` cannot be published to, or None (RabbitMQ takes any UTF-8 name up to
    255 bytes; the AMQP library sends exchange names of at most 127 characters)."""
    why = sendable_name(route.exchange, "exchange")
    if why is None and len(route.routing_key.encode("utf-8", "surrogatepass")) > 255:
        why = "the routing key is longer than 255 bytes"
    return why


#: Longest sleep of the rate limit between two marks of progress (see ``throttle``).
THROTTLE_STEP = 1.0


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
    stall_timeout: float = STALL_TIMEOUT
    """End the replay when RabbitMQ sends nothing (no delivery, no confirm) for this long."""
    on_replayed: Callable[[DeadLetter, Route, int], None] | None = None
    """Called for each dead letter whose republish was confirmed, with the time (ms) it was
    sent (the job events' record)."""
    to: Route | None = None
    """A move rather than a replay: every selected message goes to this route unchanged
    (same headers, no replay count); the same confirm-then-ack hop."""
    quorum: bool = False
    """The DLQ is a quorum queue: move to a new consumer only once the current one is
    starved, to keep DLQ order (see :mod:`queuewatch.dlq.readers`)."""
    drops: Callable[[Route], Awaitable[Keep | None]] | None = None
    """Why a republish on a route must not be sent, as (reason, detail): a queue it reaches
    drops its head past a length limit (``drops-head``), or that could not be told
    (``unchecked``): :class:`queuewatch.dlq.targets.DropsHead`. Such dead letters are kept.
    Not asked for a move (``to``)."""
    leave_head: int = 0
    """Leave this many dead letters at the head in the DLQ, not replayed (looked at, not
    selected): those a shovel gave back in doubt (:func:`queuewatch.dlq.shovel.given_back`)."""


async def dry_run(
    connection: Connection, queue: str, opts: ReplayOptions, progress: ProgressFn | None
) -> ReplayResult:
    start = time.monotonic()
    scanned = matched = would = 0
    skipped: list[Skipped] = []
    gone: dict[Route, str | None] = {}
    async with aclosing(iterate(connection, queue, opts.limit, progress)) as stream:
        async for dl, _message in stream:
            scanned += 1
            if not opts.flt.matches(dl):
                continue
            matched += 1
            route, skip = classify(dl, opts.force, opts.max_replays, opts.to)
            if route is not None:
                if route not in gone:
                    gone[route] = await _missing_target(connection, route)
                why = gone[route]
                if why is not None:
                    skip = Skipped(dl.job_id, dl.position, "unroutable", why)
                elif (drop := await _drops(opts, route)) is not None:
                    skip = Skipped(dl.job_id, dl.position, *drop)
            if skip is None:
                would += 1
            else:
                skipped.append(skip)
    return ReplayResult(queue, True, scanned, matched, would, tuple(skipped),
                        time.monotonic() - start)


async def _drops(opts: ReplayOptions, route: Route) -> Keep | None:
    """Why a republish on ``route`` must not be sent (see ``drops``)."""
    if opts.drops is None or opts.to is not None:
        return None
    return await opts.drops(route)


async def _missing_target(connection: Connection, route: Route) -> str | None:
    """Why a republish on ``route`` would surely be kept, as the replay would say it, or
    None: its exchange was deleted, or (the default exchange) the queue it names was (a
    dry run counts what the replay would replay: it must not count those)."""
    if route.exchange:
        if await exchange_exists(connection, route.exchange):
            return None
        return f"exchange {route.exchange!r} does not exist"
    try:
        await queue_counts(connection, route.routing_key)
    except NotFound:
        return f"{route.describe()} matched no queue"
    return None


class _Replayer:
    def __init__(
        self, readers: Readers, rout: Any, opts: ReplayOptions, pub: Connection, watch: Watch
    ) -> None:
        self.readers, self.rout, self.opts, self.pub, self.watch = readers, rout, opts, pub, watch
        self.inbox = readers.inbox
        self.exchanges: dict[str, bool] = {}
        self.window = asyncio.Semaphore(max(opts.window, 1))
        self.in_flight: dict[str, asyncio.Future[Any]] = {}
        self.tasks: set[asyncio.Future[Any]] = set()
        self.skipped: list[Skipped] = []
        self.scanned = self.matched = self.replayed = 0
        self.unconfirmed = 0
        """Republishes given up on without a confirm (the link died)."""
        self.unsent = 0
        """Republishes the closed channel refused to write (surely not sent)."""
        self.started = time.monotonic()

    def _track(self, fut: asyncio.Future[Any]) -> None:
        self.tasks.add(fut)
        fut.add_done_callback(self.tasks.discard)

    def hold(self, rc: ReadChannel, tag: int, skip: Skipped | None = None) -> None:
        rc.hold(tag)
        if skip is not None:
            self.skipped.append(skip)

    async def throttle(self, n: int) -> None:
        """Wait until the ``n``-th republish is due at ``--rate``. That wait is ours, not the
        broker's: it is marked as progress as it goes, so that a rate slower than one per
        ``stall_timeout`` is not taken for a silent broker (it was: "no answer from RabbitMQ
        for 30s" at ``--rate 0.025``, nothing replayed)."""
        if self.opts.rate:
            due = self.started + n / self.opts.rate
            while (delay := due - time.monotonic()) > 0:
                await asyncio.sleep(min(delay, THROTTLE_STEP))
                self.watch.progress()

    async def handle(self, position: int, message: Delivery) -> None:
        rc = self.readers.of(message)
        tag = delivery_tag(message)
        dl = to_dead_letter(position, message)
        self.scanned += 1
        if position < self.opts.leave_head or not self.opts.flt.matches(dl):
            self.hold(rc, tag)
            return
        self.matched += 1
        route, skip = classify(dl, self.opts.force, self.opts.max_replays, self.opts.to)
        if route is None:
            self.hold(rc, tag, skip)
            return
        if route.exchange not in self.exchanges:
            self.exchanges[route.exchange] = await exchange_exists(self.pub, route.exchange)
        if not self.exchanges[route.exchange]:
            self.hold(rc, tag, Skipped(dl.job_id, dl.position, "unroutable",
                                   f"exchange {route.exchange!r} does not exist"))
            return
        if (drop := await _drops(self.opts, route)) is not None:
            self.hold(rc, tag, Skipped(dl.job_id, dl.position, *drop))
            return
        try:
            props = (replay_properties(message.header.properties, dl, self.opts.user)
                     if self.opts.to is None else moved_properties(message.header.properties,
                                                                   self.opts.user))
        except ENCODE_ERRORS as exc:  # e.g. a delivery mode other than 1 or 2
            self.hold(rc, tag, Skipped(dl.job_id, dl.position, "unpublishable",
                                   f"its properties cannot be sent as AMQP: {exc}"))
            return
        await self.window.acquire()
        await self.throttle(self.matched)
        mid = props.message_id
        if mid and mid in self.in_flight:
            # aiormq matches returned messages by message_id: one copy in flight at a time.
            await asyncio.wait([self.in_flight[mid]])
        sent_ms = env.now_ms()  # the job's "replayed" time: before it can run again
        fut = publish(self.rout, bytes(message.body), route.exchange, route.routing_key, props)
        if mid:
            self.in_flight[mid] = fut
        self._track(fut)
        fut.add_done_callback(lambda f: self._confirmed(f, rc, tag, dl, route, mid, sent_ms))

    def _confirmed(
        self, fut: asyncio.Future[Any], rc: ReadChannel, tag: int, dl: DeadLetter, route: Route,
        mid: str | None, sent_ms: int = 0,
    ) -> None:
        self.window.release()
        if mid and self.in_flight.get(mid) is fut:
            del self.in_flight[mid]
        if fut.cancelled():
            self.unconfirmed += 1
            self.hold(rc, tag, Skipped(dl.job_id, dl.position, "stopped",
                                   "no confirm before the replay stopped (may also have arrived)"))
            return
        exc = fut.exception()
        if exc is None:
            self.watch.progress()
            self.replayed += 1
            rc.acker.done(tag)
            if self.opts.on_replayed is not None:
                self.opts.on_replayed(dl, route, sent_ms)
            return
        result = classify_failure(exc)
        if result.outcome is Outcome.REFUSED and not result.sent:
            # The AMQP library could not encode it: nothing was sent, the channel is fine.
            self.watch.progress()
            self.hold(rc, tag, Skipped(dl.job_id, dl.position, "unpublishable", result.detail))
        elif result.outcome is Outcome.LINK_LOST and not result.sent:
            self.unsent += 1  # the channel was closed before it was written: not sent
            self.hold(rc, tag, Skipped(dl.job_id, dl.position, "stopped",
                                   "not sent: the republishing channel was closed"))
            self.watch.fail(describe(exc, "republishing"), link_lost=True)
        elif result.outcome is Outcome.UNROUTABLE:
            self.watch.progress()
            self.hold(rc, tag, Skipped(dl.job_id, dl.position, "unroutable",
                                   f"{route.describe()} matched no queue"))
        elif result.outcome is Outcome.NACKED:
            self.watch.progress()
            self.hold(rc, tag, Skipped(dl.job_id, dl.position, "publish-failed",
                                   f"RabbitMQ refused it (nack: {route.routing_key!r} full?)"))
        else:
            self.unconfirmed += 1
            self.hold(rc, tag, Skipped(dl.job_id, dl.position, "stopped",
                                   f"no confirm: {type(exc).__name__} (may also have arrived)"))
            self.watch.fail(describe(exc, "republishing"), link_lost=is_link_error(exc))

    def abort(self) -> None:
        self.readers.abort()
        for task in list(self.tasks):
            task.cancel()

    async def settle(self, error: str | None) -> tuple[str | None, int]:
        """Wait (bounded) for the republishes in flight, send the acks owed, and close the
        DLQ channel: its close-ok proves every ack before it was processed.

        Returns the error (the first one) and an upper bound of the dead letters in doubt
        (they may be both in their queue and in the DLQ): given up on without a confirm,
        confirmed with no ack written, or acked just before the link broke."""
        stall = min(SETTLE_STALL, self.opts.stall_timeout)
        if self.tasks and not self.watch.link_lost:
            try:
                async with self.watch.guard(stall=stall):
                    while self.tasks:
                        await asyncio.wait(list(self.tasks))
            except Interrupted as exc:
                error = error or str(exc)
        for task in list(self.tasks):
            task.cancel()  # no confirm will come: those dead letters stay in the DLQ
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=CLOSE_TIMEOUT)
        acks_sure = False
        try:
            if self.watch.link_lost:
                raise Interrupted(error or "the link is lost")
            async with self.watch.guard(stall=stall):
                await self.readers.flush_and_close()
            acks_sure = True
        except (Interrupted, wire.AMQPError,
                wire.ChannelClosed, ConnectionError, RuntimeError) as exc:
            self.readers.abort()
            error = error or (f"acking replayed dead letters failed: {exc} (they stay in the "
                              "DLQ and were also replayed: duplicates, no loss)")
        unsent = self.readers.unsent
        return error, self.unconfirmed + unsent + (0 if acks_sure else self.readers.unproven())


async def _deleted(connection: Connection, queue: str, watch: Watch) -> bool:
    """Whether the consumer was cancelled because the DLQ no longer exists (one look)."""
    if not watch.consumer_cancelled or watch.link_lost:
        return False
    try:
        await queue_depth(connection, queue)
    except NotFound:
        return True
    except Interrupted:
        return False
    return False


async def replay(
    connection: Connection, queue: str, opts: ReplayOptions,
    progress: ProgressFn | None = None, publish_connection: Connection | None = None,
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
    watch = Watch(connection, pub, stall=opts.stall_timeout,
                  probe=lambda: still_there(connection, queue))
    watch.consuming(queue)
    async with (AsyncExitStack() as stack,
                raw_channel(pub, confirms=True, watch=watch) as rout):
        watch.attach(rout, "republishing")
        readers = Readers(connection, stack, watch, Inbox(watch), opts.window,
                          starved_only=opts.quorum)
        r = _Replayer(readers, rout, opts, pub, watch)
        await readers.start(queue, target)
        try:
            async with watch.guard():
                position = 0
                while position < target:
                    raise_if_cancelled()  # (a library under us may swallow one)
                    if watch.reason is not None:  # the loop need not yield to the guard
                        raise Interrupted(watch.reason)
                    message = await r.inbox.get(opts.idle_timeout)
                    if message is None:
                        # Quiet: the rest was taken by someone else, or the link is dying.
                        if await still_there(connection, queue) == 0 and watch.check() is None:
                            break
                        continue
                    await r.handle(position, message)
                    await readers.keep_flowing()
                    position += 1
                    if progress is not None and position % PROGRESS_EVERY == 0:
                        progress(position, target)
        except Interrupted as exc:
            error = str(exc)
        except NotFound as exc:
            error = str(exc)
        except (wire.AMQPError, wire.ChannelClosed,
                ConnectionError) as exc:
            # A dead link can surface here before the watch's callbacks ran: say so then
            error = watch.check() or f"replay stopped: {type(exc).__name__}: {exc}"
        except asyncio.CancelledError:
            # Cancelled (e.g. the TUI worker): unacked dead letters return to the DLQ when
            # the channel closes; republished ones may be duplicated, none is lost.
            r.abort()
            raise
        error, in_doubt = await r.settle(error)
        deleted = (error is not None or watch.consumer_cancelled) and \
            await _deleted(connection, queue, watch)
        if deleted:
            error = (f"the DLQ {queue!r} was deleted during the replay (RabbitMQ cancelled the "
                     "replay's consumer); the dead letters still in it went with it")
        elif error is not None:
            error += " (the dead letters not replayed stay in the DLQ; run the replay again)"
        watch.closing()
        if progress is not None:
            progress(r.scanned, target)
    return ReplayResult(queue, False, r.scanned, r.matched, r.replayed, tuple(r.skipped),
                        time.monotonic() - r.started, error, total=target,
                        in_doubt=in_doubt if error is not None else 0, dlq_deleted=deleted,
                        link_lost=error is not None and watch.link_lost)

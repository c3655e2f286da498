"""The one path every job event takes into the events stream.

:class:`EventRecorder` batches: events wait in order while one batch is out for its
confirm, then leave together as the next batch (a group commit: no added latency when idle,
hundreds of events per publish when busy). ``emit`` queues an event; ``record`` queues
events and waits until the broker confirmed them. A worker ``record``s
the events the job's outcome depends on (succeeded, retry scheduled, dead-lettered) before
it acks the job, so an acked job always has its outcome on record; ``started`` is only
``emit``ted (the ack of the outcome comes after it in the same ordered stream anyway).

A batch whose confirm is lost is sent again (at-least-once; readers drop repeated event
ids). While the broker is unreachable, events wait in memory (at most ``max_pending``; past
that ``record`` waits for room, which holds the job's ack — back-pressure).

``hold`` bounds how long one ``record`` waits: a stream that takes no writes for a while
(its node down; on a 2-node cluster its coordinator without a majority, for minutes) must
not stop every job. Past ``hold`` the caller goes on, the event stays queued and is sent
when the stream answers; until then later records do not wait at all. One warning says
so, one line says when the record caught up.
Events still queued when the process dies are lost: a job's status then shows its last
recorded state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from queuewatch.aio import end_task, wait_for
from queuewatch.broker.errors import LINK_OR_AMQP_ERRORS
from queuewatch.broker.link import BrokerLink
from queuewatch.broker.policy import ReconnectPolicy
from queuewatch.broker.publish import ConfirmedPublisher, Outcome, Properties
from queuewatch.broker.streams import OpenChannel, declare_stream
from queuewatch.broker.types import Connection
from queuewatch.config import Settings
from queuewatch.events.model import CONTENT_TYPE, H_COUNT, Recordable, encode_batch, stream_arguments

log = logging.getLogger(__name__)

#: Most events in one stream message.
MAX_BATCH = 500
#: Longest an emitted event (nobody waits for it) waits for company before it is sent.
LINGER = 0.05
#: How long a worker's recorded outcome waits for others to share its publish (seconds).
WORKER_GATHER = 0.002
#: Events waiting (not yet confirmed) before ``record`` holds its caller.
MAX_PENDING = 50_000
_RETRY = ReconnectPolicy(initial=0.1, factor=2.0, cap=2.0)


async def declare_events_stream(open_channel: OpenChannel, settings: Settings) -> None:
    """Declare the job events stream (idempotent: same arguments every time) and wait until
    it takes publishes (see :mod:`queuewatch.broker.streams`)."""
    await declare_stream(open_channel, settings.events_stream,
                         stream_arguments(settings.events_max_age, settings.events_max_bytes))


class EventRecorder:
    """Records job events in the stream of ``settings.events_stream`` over ``link``."""

    def __init__(self, link: BrokerLink, settings: Settings, *, max_pending: int = MAX_PENDING,
                 gather: float = 0.0, hold: float | None = None) -> None:
        self.link = link
        self.settings = settings
        self.stream = settings.events_stream
        self.max_pending = max_pending
        self.gather = gather
        """Seconds a recorded event waits for others to share its publish (a worker: its
        jobs' outcomes finish within moments of each other, and fewer, fuller batches cost
        less CPU; a producer: 0, its caller waits)."""
        self.hold = settings.events_hold if hold is None else hold
        """Longest a ``record`` waits for the confirm (see the module docstring)."""
        self._publisher = ConfirmedPublisher(link)
        self._queue: deque[tuple[Recordable, asyncio.Future[bool] | None]] = deque()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._declared = False
        self._waiting: str | None = None
        """What the sender waits for: ``idle`` (any event), ``linger`` (a recorded event or a
        full batch), ``gather`` (a full batch), None (it is busy sending)."""
        self._urgent = 0
        self._deadlines: deque[tuple[float, asyncio.Future[bool]]] = deque()
        """Recorded events' futures and when their caller stops waiting (``hold``)."""
        self._hold_timer: asyncio.TimerHandle | None = None
        """Events in the queue that someone waits for (``record``, ``flush``)."""

        self.batches = 0
        """Stream messages confirmed (for tests and benchmarks)."""
        self.recorded = 0
        """Events confirmed."""
        self.held_out = 0
        """Recorded events whose caller stopped waiting after ``hold`` (not yet confirmed
        then)."""
        self.failing_since: float | None = None
        """Monotonic time of the first failed send since the last confirmed one."""
        self._held_logged = False
        self._held_now = 0
        link.on_up(self._on_up)

    # -- recording ---------------------------------------------------------------------
    def emit(self, event: Recordable) -> None:
        """Queue ``event`` (it leaves with the next batch); nothing to wait for."""
        self._push(event, None)

    def _push(self, event: Recordable, fut: asyncio.Future[bool] | None) -> None:
        self._queue.append((event, fut))
        if fut is not None:
            self._urgent += 1
        if len(self._queue) >= self.max_pending:
            self._room.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="event recorder")
        # Wake the sender only when it matters (not once per event: a busy worker emits
        # thousands a second): it waits for a first event, for a recorded one while it
        # lingers over emitted ones, or for a full batch.
        match self._waiting:
            case "idle":
                self._wake.set()
            case "linger" if fut is not None or len(self._queue) >= MAX_BATCH:
                self._wake.set()
            case "gather" if len(self._queue) >= MAX_BATCH:
                self._wake.set()

    def record_soon(self, *events: Recordable) -> asyncio.Future[bool]:
        """Queue ``events`` now; the future resolves once the broker confirmed them (the
        caller may do other work meanwhile, then await it): True, or False when it stopped
        waiting after ``hold`` (the events are still queued, not yet on record)."""
        for e in events[:-1]:
            self._push(e, None)
        fut = self._future()
        self._push(events[-1], fut)
        return fut

    def _future(self) -> asyncio.Future[bool]:
        """A future for a recorded event, resolved by its confirm or after ``hold``."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        if self._held_logged:
            # The stream is known not to confirm (a record already waited ``hold`` in vain):
            # nobody waits again until it confirms a batch.
            self.held_out += 1
            self._held_now += 1
            fut.set_result(False)
        elif self.hold > 0:
            # One timer for all: deadlines come in the order the futures were made.
            self._deadlines.append((loop.time() + self.hold, fut))
            if self._hold_timer is None:
                self._hold_timer = loop.call_at(self._deadlines[0][0], self._expire)
        return fut

    def _expire(self) -> None:
        self._hold_timer = None
        loop = asyncio.get_running_loop()
        now, deadlines = loop.time(), self._deadlines
        while deadlines:
            deadline, fut = deadlines[0]
            if not fut.done() and deadline > now:
                break
            deadlines.popleft()
            self._give_up_waiting(fut)
        if deadlines:
            self._hold_timer = loop.call_at(deadlines[0][0], self._expire)

    def _give_up_waiting(self, fut: asyncio.Future[bool]) -> None:
        if fut.done():
            return
        fut.set_result(False)
        self.held_out += 1
        self._held_now += 1
        if not self._held_logged:
            self._held_logged = True
            log.warning("job events to %r not confirmed within events_hold (%gs): jobs go on "
                        "without waiting for their record; %d events wait in memory and are "
                        "sent when the stream takes writes again (lost if this process stops "
                        "first)", self.stream, self.hold, len(self._queue))

    async def record(self, *events: Recordable) -> bool:
        """Record ``events`` (in order) and wait until the broker confirmed them: True, or
        False after ``hold`` (still queued). Batches are confirmed in order, so one future
        on the last event covers them all."""
        if not events:
            return True
        if not self._room.is_set():
            await self._room.wait()
        for e in events[:-1]:
            self._push(e, None)
        fut = self._future()
        self._push(events[-1], fut)
        return await fut

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything emitted so far is confirmed; False on timeout."""
        if not self._queue:
            return True
        event, fut = self._queue[-1]
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._queue[-1] = (event, fut)
            self._urgent += 1
            if self._waiting == "linger":
                self._wake.set()
        done, _ = await asyncio.wait([fut], timeout=timeout)
        return bool(done)

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def close(self, timeout: float = 5.0) -> None:
        """Flush (at most ``timeout`` s), then stop; events still waiting are reported."""
        await self.flush(timeout)
        self._closing = True
        self._wake.set()
        await end_task(self._task)
        if self._queue:
            log.warning("%d job events not recorded (the broker did not confirm them in %gs)",
                        len(self._queue), timeout)
            for _, fut in self._queue:
                if fut is not None and not fut.done():
                    fut.cancel()
            self._queue.clear()
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        self._deadlines.clear()
        await self._publisher.close()

    # -- sending -----------------------------------------------------------------------
    async def _on_up(self, connection: Connection) -> None:
        self._declared = False
        self._wake.set()

    async def _declare(self) -> None:
        try:
            await declare_events_stream(lambda: self.link.channel(timeout=10.0), self.settings)
        except LINK_OR_AMQP_ERRORS as exc:
            # Declared before with other arguments (an operator changed retention): use it.
            log.debug("declaring %r: %s", self.stream, exc)
        self._declared = True

    async def _run(self) -> None:
        backoff = _RETRY.backoff()
        while not self._closing:
            if not self._queue:
                self._wake.clear()
                self._waiting = "idle"
                await self._wake.wait()
                self._waiting = None
                continue
            if len(self._queue) < MAX_BATCH:
                # Only emitted events (nobody waits for them): let them ride along with the
                # next recorded one, or leave after LINGER; recorded ones wait ``gather``.
                await self._linger(LINGER if not self._urgent else self.gather)
            await asyncio.sleep(0)  # records made in this same turn of the loop join the batch
            batch = [self._queue[i] for i in range(min(MAX_BATCH, len(self._queue)))]
            outcome, detail = await self._send([e for e, _ in batch])
            if outcome is Outcome.CONFIRMED:
                backoff.reset()
                self.failing_since = None
                if self._held_logged and len(self._queue) <= len(batch):
                    self._held_logged = False
                    log.warning("job events to %r confirmed again: the %d events jobs went on "
                                "without are on record", self.stream, self._held_now)
                    self._held_now = 0
                for _ in batch:
                    _, fut = self._queue.popleft()
                    if fut is not None:
                        self._urgent -= 1
                        if not fut.done():
                            fut.set_result(True)
                self.batches += 1
                self.recorded += len(batch)
                if len(self._queue) < self.max_pending:
                    self._room.set()
                continue
            if self.failing_since is None:
                self.failing_since = time.monotonic()
            if outcome in (Outcome.UNROUTABLE, Outcome.QUEUE_DOWN):
                self._declared = False
            log.warning("recording %d job events: %s (%s); trying again", len(batch),
                        outcome.value, detail)
            await asyncio.sleep(backoff.next_delay())

    async def _linger(self, seconds: float) -> None:
        """Wait up to ``seconds`` for company (see :meth:`_push` for what ends it early)."""
        if seconds <= 0 or len(self._queue) >= MAX_BATCH:
            return
        self._wake.clear()
        self._waiting = "gather" if self._urgent else "linger"
        try:
            await wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass
        finally:
            self._waiting = None

    async def _send(self, events: list[Recordable]) -> tuple[Outcome, str]:
        try:
            if not self._declared:
                await self._declare()
        except LINK_OR_AMQP_ERRORS as exc:
            return Outcome.LINK_LOST, str(exc)
        props = Properties(content_type=CONTENT_TYPE, delivery_mode=2,
                           headers={H_COUNT: len(events)})
        result = await self._publisher.publish(
            encode_batch(events), exchange="", routing_key=self.stream, properties=props,
            queue=self.stream, link_timeout=30.0)
        return result.outcome, result.detail


def recorder_for(link: BrokerLink, settings: Settings, *, gather: float = 0.0) -> EventRecorder | None:
    """A recorder when job events are on (``settings.job_events``), else None."""
    return EventRecorder(link, settings, gather=gather) if settings.job_events else None


async def record_once(connection: Connection, settings: Settings, events: list[Recordable],
                      timeout: float = 10.0) -> bool:
    """Record ``events`` in one confirmed batch over a plain connection (one-shot commands:
    DLQ replay); declares the stream when it is missing. False (and a log line) when the
    broker did not confirm them."""
    if not events or not settings.job_events:
        return True
    publisher = ConfirmedPublisher(connection)
    props = Properties(content_type=CONTENT_TYPE, delivery_mode=2, headers={H_COUNT: len(events)})
    try:
        for first in (True, False):
            result = await publisher.publish(
                encode_batch(events), exchange="", routing_key=settings.events_stream,
                properties=props, queue=settings.events_stream, timeout=timeout)
            if result.ok:
                return True
            if first and result.outcome is Outcome.UNROUTABLE:
                await declare_events_stream(lambda: publisher.link.channel(timeout=timeout), settings)
                continue
            break
    except LINK_OR_AMQP_ERRORS as exc:
        log.warning("%d job events not recorded: %s", len(events), exc)
        return False
    finally:
        await publisher.close()
    log.warning("%d job events not recorded: %s (%s)", len(events), result.outcome.value, result.detail)
    return False

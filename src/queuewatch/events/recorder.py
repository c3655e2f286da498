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
that ``record`` waits for room, which holds the job's ack — back-pressure, never loss).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

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
                 gather: float = 0.0) -> None:
        self.link = link
        self.settings = settings
        self.stream = settings.events_stream
        self.max_pending = max_pending
        self.gather = gather
        """Seconds a recorded event waits for others to share its publish (a worker: its
        jobs' outcomes finish within moments of each other, and fewer, fuller batches cost
        less CPU; a producer: 0, its caller waits)."""
        self._publisher = ConfirmedPublisher(link)
        self._queue: deque[tuple[Recordable, asyncio.Future[None] | None]] = deque()
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
        """Events in the queue that someone waits for (``record``, ``flush``)."""

        self.batches = 0
        """Stream messages confirmed (for tests and benchmarks)."""
        self.recorded = 0
        """Events confirmed."""
        link.on_up(self._on_up)

    # -- recording ---------------------------------------------------------------------
    def emit(self, event: Recordable) -> None:
        """Queue ``event`` (it leaves with the next batch); nothing to wait for."""
        self._push(event, None)

    def _push(self, event: Recordable, fut: asyncio.Future[None] | None) -> None:
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

    def record_soon(self, *events: Recordable) -> asyncio.Future[None]:
        """Queue ``events`` now; the future resolves once the broker confirmed them (the
        caller may do other work meanwhile, then await it)."""
        for e in events[:-1]:
            self._push(e, None)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._push(events[-1], fut)
        return fut

    async def record(self, *events: Recordable) -> None:
        """Record ``events`` (in order) and wait until the broker confirmed them. Batches
        are confirmed in order, so one future on the last event covers them all."""
        if not events:
            return
        if not self._room.is_set():
            await self._room.wait()
        for e in events[:-1]:
            self._push(e, None)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._push(events[-1], fut)
        await fut

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
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._queue:
            log.warning("%d job events not recorded (the broker did not confirm them in %gs)",
                        len(self._queue), timeout)
            for _, fut in self._queue:
                if fut is not None and not fut.done():
                    fut.cancel()
            self._queue.clear()
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
                for _ in batch:
                    _, fut = self._queue.popleft()
                    if fut is not None:
                        self._urgent -= 1
                        if not fut.done():
                            fut.set_result(None)
                self.batches += 1
                self.recorded += len(batch)
                if len(self._queue) < self.max_pending:
                    self._room.set()
                continue
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
            await asyncio.wait_for(self._wake.wait(), seconds)
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

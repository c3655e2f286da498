"""The async producer (aio-pika): confirmed, mandatory, persistent publishes with a window.

``await producer.publish(...)`` returns once the broker confirmed the job. Many publishes may
be outstanding at once (``window``, default 256): call ``submit`` in a loop to pipeline them
(no per-message round trip) and ``flush`` at the end, or run ``publish`` from many tasks.

After a connection loss the producer reconnects and re-sends every job whose confirm had not
arrived (at-least-once: the same ``message_id`` may then arrive twice).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Mapping
from datetime import datetime
from typing import Any, Literal

from queuewatch import envelope
from queuewatch.broker.link import BrokerLink
from queuewatch.broker.publish import ConfirmedPublisher, Outcome, Properties, PublishResult
from queuewatch.config import Settings
from queuewatch.errors import (
    BackPressure,
    BrokerUnavailable,
    DuplicateJob,
    PublishError,
    QueueDown,
    Unroutable,
)
from queuewatch.events.model import Source
from queuewatch.events.recorder import recorder_for
from queuewatch.producer._common import (
    BACKPRESSURE_RETRY_INTERVAL,
    DEFAULT_WAIT_TIMEOUT,
    DEFAULT_WINDOW,
    Outgoing,
    Published,
    accepted_event,
    build,
    cap_of,
    delay_levels_of,
    published,
)
from queuewatch.producer.beats import ProducerBeats
from queuewatch.producer.locks import Locks, UniqueLock, unique_lock
from queuewatch.producer.observer import ProducerObserver
from queuewatch.producer.outbox import Outbox, spool_path
from queuewatch.topology import Topology

log = logging.getLogger(__name__)

#: Give up re-sending after the broker has been unreachable this long (seconds).
DEFAULT_RECONNECT_TIMEOUT = 60.0
_BLOCKED_POLL = 0.1
#: With the outbox: how long ``connect`` waits for the broker before spooling (seconds).
OUTBOX_CONNECT_WAIT = 2.0


class AsyncProducer:
    """Publish jobs with confirms from asyncio code. Use as ``async with AsyncProducer(...)``."""

    def __init__(
        self,
        settings: Settings,
        topology: Topology | int | None = None,
        *,
        window: int = DEFAULT_WINDOW,
        connection_name: str = "queuewatch-producer",
        reconnect_timeout: float = DEFAULT_RECONNECT_TIMEOUT,
        observer: ProducerObserver | None = None,
    ) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self.settings = settings
        self.topology = topology
        self.delay_levels = delay_levels_of(topology)
        self.window = window
        self.connection_name = connection_name
        self.reconnect_timeout = reconnect_timeout
        self.observer = observer or ProducerObserver()
        self._slots = asyncio.Semaphore(window)
        self._pending: set[asyncio.Future[Published]] = set()
        self.link = BrokerLink(settings, name=connection_name)
        self._publisher = ConfirmedPublisher(self.link)
        self._locks = Locks(self.link, self._publisher)
        self.events_link: BrokerLink | None = (
            BrokerLink(settings, name=f"{connection_name} events") if settings.job_events else None)
        """The job events stream on a connection of its own (see ``Worker.stream_link``: a
        stream that cannot take a publish makes RabbitMQ close the whole connection)."""
        self.recorder = None if self.events_link is None else recorder_for(self.events_link, settings)
        self._source = Source("producer", name=connection_name)
        self._closed = False
        self.outbox: Outbox | None = None
        """With ``outbox = true``: the local spool used while the broker is away."""
        if settings.outbox or settings.outbox_dir is not None:
            self.outbox = Outbox(
                spool_path(settings, connection_name), link=self.link, publisher=self._publisher,
                recorder=self.recorder, source=self._source, delay_levels=self.delay_levels,
                observer=self.observer, max_jobs=settings.outbox_max_jobs,
                fsync=settings.outbox_fsync)
        self.beats: ProducerBeats | None = None
        """With the outbox: the producer's heartbeat (its spool's depth and age)."""
        if self.outbox is not None:
            self.beats = ProducerBeats(self.link, settings.telemetry_exchange, connection_name,
                                       self.outbox)

    @property
    def reconnects(self) -> int:
        """How many times the producer had to reconnect."""
        return max(self.link.connects - 1, 0)

    # -- lifecycle ---------------------------------------------------------------------
    async def connect(self) -> None:
        """Connect (failing over along the addresses) within ``reconnect_timeout``; raises
        the broker's refusal (credentials, vhost) at once. With the outbox, a broker that
        does not answer is no error: publishes are spooled until it does."""
        if self.events_link is not None:
            await self.events_link.start()  # in the background: ready by the first publish
        if self.outbox is None:
            await self.link.open(self.reconnect_timeout)
            return
        self.outbox.start()
        if self.beats is not None:
            self.beats.start()
        try:
            await self.link.open(min(self.reconnect_timeout, OUTBOX_CONNECT_WAIT))
        except BrokerUnavailable as exc:
            log.warning("broker unreachable (%s); publishes go to the outbox %s", exc,
                        self.outbox.path)

    async def close(self) -> None:
        """Wait for outstanding confirms, then close the connection."""
        try:
            await self.flush()
        finally:
            self._closed = True
            if self.beats is not None:
                await self.beats.close()
            if self.outbox is not None:
                await self.outbox.close()
            if self.recorder is not None:
                await self.recorder.close()
            await self._locks.close()
            await self._publisher.close()
            await self.link.close()
            if self.events_link is not None:
                await self.events_link.close()

    async def __aenter__(self) -> AsyncProducer:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def blocked(self) -> bool:
        """True while the broker blocks publishing (memory or disk alarm)."""
        return self.link.blocked

    @property
    def in_flight(self) -> int:
        return self.window - self._slots._value

    # -- publishing --------------------------------------------------------------------
    async def publish(
        self,
        queue: str,
        payload: Any,
        *,
        priority: int | None = None,
        delay: float | None = None,
        at: datetime | float | None = None,
        job_id: str | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, Any] | None = None,
        wait: bool = False,
        timeout: float | None = None,
        unique_for: float | None = None,
        unique_key: str | None = None,
        if_exists: Literal["raise", "return"] = "raise",
        webhook: str | None = None,
    ) -> Published:
        """Publish one job and wait for its confirm.

        Raises :class:`BackPressure` when the queue is full (with ``wait=True``: keeps trying
        until ``timeout`` seconds, default 30), :class:`Unroutable` when no queue matched.

        ``unique_for=S``: refuse (:class:`DuplicateJob`) while a job with the same
        ``unique_key`` (default: the job id) is queued, scheduled or running, at most S
        seconds; ``if_exists="return"`` returns the existing job instead (``existing=True``).
        """
        fut = await self.submit(
            queue, payload, priority=priority, delay=delay, at=at, job_id=job_id,
            idempotency_key=idempotency_key, headers=headers, wait=wait, timeout=timeout,
            unique_for=unique_for, unique_key=unique_key, if_exists=if_exists, webhook=webhook,
        )
        return await fut

    async def submit(
        self,
        queue: str,
        payload: Any,
        *,
        priority: int | None = None,
        delay: float | None = None,
        at: datetime | float | None = None,
        job_id: str | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, Any] | None = None,
        wait: bool = False,
        timeout: float | None = None,
        unique_for: float | None = None,
        unique_key: str | None = None,
        if_exists: Literal["raise", "return"] = "raise",
        webhook: str | None = None,
    ) -> asyncio.Future[Published]:
        """Start a publish; returns once it is in the window, with a future for its confirm."""
        lock = None
        if unique_for is not None:
            lock = unique_lock(queue, unique_key or job_id, unique_for, if_exists)
            headers = {**(headers or {}), envelope.H_UNIQUE: lock.name}
        out = build(
            queue, payload, delay_levels=self.delay_levels, priority=priority, delay=delay, at=at,
            job_id=job_id, idempotency_key=idempotency_key, headers=headers, webhook=webhook,
        )
        return await self.submit_outgoing(out, wait=wait, timeout=timeout, lock=lock)

    async def submit_outgoing(
        self, out: Outgoing, *, wait: bool = False, timeout: float | None = None,
        lock: UniqueLock | None = None,
    ) -> asyncio.Future[Published]:
        if self._closed:
            raise PublishError("the producer is closed")
        if self.outbox is not None and lock is None and (
                self.outbox.depth or not self.link.alive or self.link.blocked):
            spooled: asyncio.Future[Published] = asyncio.get_running_loop().create_future()
            spooled.set_result(await self.outbox.put(
                out, wait=wait, timeout=DEFAULT_WAIT_TIMEOUT if timeout is None else timeout))
            return spooled
        await self._slots.acquire()
        fut: asyncio.Future[Published] = asyncio.ensure_future(
            self._send(out, wait, timeout) if lock is None else self._send_unique(out, wait, timeout, lock))
        self._pending.add(fut)
        fut.add_done_callback(self._done)
        return fut

    async def flush(self) -> None:
        """Wait until every submitted publish is confirmed or failed (errors stay in futures)."""
        while self._pending:
            await asyncio.wait(list(self._pending))

    def _done(self, fut: asyncio.Future[Published]) -> None:
        self._pending.discard(fut)
        self._slots.release()

    async def _send_unique(self, out: Outgoing, wait: bool, timeout: float | None,
                           lock: UniqueLock) -> Published:
        """Take the lock (see :mod:`.unique`), then publish; release it if the job was not."""
        for _ in range(3):
            held_by = await self._locks.acquire(lock, out.message_id)
            if held_by is None:
                break
            if held_by:  # another job holds the key (an empty answer: it was just released)
                if lock.if_exists == "return":
                    return Published(held_by, out.queue, out.exchange, out.routing_key, existing=True)
                raise DuplicateJob(lock.key, held_by)
        else:
            raise DuplicateJob(lock.key, None)
        try:
            return await self._send(out, wait, timeout)
        except BaseException:
            await self._locks.release(lock.name)
            raise

    async def _send(self, out: Outgoing, wait: bool, timeout: float | None) -> Published:
        """Publish until confirmed; re-send after a lost link (at-least-once). Without a
        confirm within ``reconnect_timeout`` of the first try or of the broker's last answer
        (a silent link included; an alarm's hold excepted), :class:`BrokerUnavailable`; with
        the outbox, spooled after ``OUTBOX_CONNECT_WAIT`` instead."""
        wait_deadline = time.monotonic() + (DEFAULT_WAIT_TIMEOUT if timeout is None else timeout)
        patience = (self.reconnect_timeout if self.outbox is None
                    else min(self.reconnect_timeout, OUTBOX_CONNECT_WAIT))
        loop = asyncio.get_running_loop()
        # when to give up (event-loop time): from the first try or the broker's last answer
        link_deadline: float | None = None
        props = Properties(
            content_type=out.content_type, delivery_mode=2, priority=out.priority,
            message_id=out.message_id, timestamp=_ts(out.timestamp), headers=out.headers,
        )
        while True:
            if self.outbox is not None and (self.link.blocked or not self.link.alive):
                return await self.outbox.put(out, wait=True)
            if self.link.blocked:
                await self._wait_unblocked()
            if link_deadline is None:
                link_deadline = loop.time() + patience
            sending = self._publisher.publish(
                out.body, exchange=out.exchange, routing_key=out.routing_key, properties=props,
                queue=out.queue, deadline=link_deadline,
            )
            if self.outbox is None:
                result = await sending
            else:
                maybe = await self._unless_blocked(sending)
                if maybe is None:  # blocked while waiting: spooled (the copy sent may arrive too)
                    return await self.outbox.put(out, wait=True)
                result = maybe
            match result.outcome:
                case Outcome.CONFIRMED:
                    if self.recorder is not None:
                        # Before returning: a status asked right after publish() knows the job.
                        await self.recorder.record(accepted_event(out, self._source))
                    return published(out)
                case Outcome.NACKED:
                    self.observer.on_publish_nack(out.queue)
                    if wait and time.monotonic() < wait_deadline:
                        await asyncio.sleep(BACKPRESSURE_RETRY_INTERVAL)
                        link_deadline = None  # the link answered: a new try has all its time
                        continue
                    raise BackPressure(out.queue, cap_of(self.topology, out.queue))
                case Outcome.REFUSED:
                    raise PublishError(f"publish to {out.queue!r} failed: {result.detail}")
                case Outcome.UNROUTABLE:
                    raise Unroutable(out.exchange, out.routing_key)
                case Outcome.QUEUE_DOWN:
                    if wait and time.monotonic() < wait_deadline:
                        await asyncio.sleep(BACKPRESSURE_RETRY_INTERVAL * 10)
                        link_deadline = None
                        continue
                    raise QueueDown(out.queue, result.detail)
            # link_lost: the message may or may not have arrived; send it again
            if self.outbox is not None:  # (from the outbox: the same id, at-least-once)
                return await self.outbox.put(out, wait=True)
            if self.link.blocked:  # an alarm holds confirms: the broker is there; wait it out
                link_deadline = None
            elif loop.time() >= link_deadline or self._closed:
                raise BrokerUnavailable(
                    f"publish to {out.queue!r} not confirmed within {patience:g}s (it may or "
                    f"may not have arrived): broker unreachable ({result.detail})")
            log.warning("publish of %s interrupted (%s); re-sending", out.message_id, result.detail)

    async def _unless_blocked(self, sending: Awaitable[PublishResult]) -> PublishResult | None:
        """The publish's outcome; None if the broker blocked the link first (a resource
        alarm holds the confirm until it clears)."""
        task = asyncio.ensure_future(sending)
        while True:
            done, _ = await asyncio.wait({task}, timeout=_BLOCKED_POLL)
            if done:
                return task.result()
            if self.link.blocked:
                task.add_done_callback(lambda t: t.cancelled() or t.exception())
                return None

    async def _wait_unblocked(self) -> None:
        """Hold publishes while the broker blocks the connection (memory or disk alarm)."""
        self.observer.on_blocked(True)
        log.warning("RabbitMQ blocked publishing (resource alarm); waiting")
        try:
            while self.link.blocked and not self._closed:
                await asyncio.sleep(_BLOCKED_POLL)
        finally:
            self.observer.on_blocked(False)


def _ts(seconds: int) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC)

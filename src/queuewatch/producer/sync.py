"""The sync producer (pika ``BlockingConnection``) for Flask/Django-style code.

Same call shape as :class:`~queuewatch.producer.AsyncProducer`; every ``publish`` waits for
its confirm (that is what a blocking client can do). Not thread-safe: one producer per thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Literal

from queuewatch import envelope
from queuewatch.broker.blocking import BlockingLink
from queuewatch.broker.publish import Outcome
from queuewatch.config import Settings
from queuewatch.errors import (
    BackPressure,
    BrokerUnavailable,
    DuplicateJob,
    PublishError,
    QueueDown,
    Unroutable,
)
from queuewatch.events.blocking import record_blocking
from queuewatch.events.model import Source
from queuewatch.producer._common import (
    BACKPRESSURE_RETRY_INTERVAL,
    DEFAULT_WAIT_TIMEOUT,
    Outgoing,
    Published,
    accepted_event,
    build,
    cap_of,
    delay_levels_of,
    published,
)
from queuewatch.producer.locks import UniqueLock, unique_lock
from queuewatch.producer.observer import ProducerObserver
from queuewatch.producer.outbox import spool_path
from queuewatch.producer.sync_beats import SyncBeats
from queuewatch.producer.sync_outbox import SyncOutbox
from queuewatch.topology import Topology

log = logging.getLogger(__name__)

DEFAULT_RECONNECT_TIMEOUT = 30.0
#: With the outbox: how long a publish (or connect) waits for the broker before spooling.
OUTBOX_CONNECT_WAIT = 2.0
#: With the outbox: how long a publish spends sending older spooled jobs first (seconds).
DRAIN_PER_PUBLISH = 5.0
#: With the outbox: how long ``close`` tries to send what is spooled (seconds).
CLOSE_DRAIN = 10.0
#: Longest an ``accepted`` record holds a publish within a minute of a failed one (seconds).
FAILING_EVENTS_WAIT = 0.5


class Producer:
    """Publish jobs with confirms from blocking code. Use as ``with Producer(...) as p``."""

    def __init__(
        self,
        settings: Settings,
        topology: Topology | int | None = None,
        *,
        connection_name: str = "queuewatch-sync-producer",
        reconnect_timeout: float = DEFAULT_RECONNECT_TIMEOUT,
        observer: ProducerObserver | None = None,
    ) -> None:
        self.settings = settings
        self.topology = topology
        self.delay_levels = delay_levels_of(topology)
        self.connection_name = connection_name
        self._events_failing_until = 0.0
        self.reconnect_timeout = reconnect_timeout
        self.observer = observer or ProducerObserver()
        self.link = BlockingLink(settings, name=connection_name, on_blocked=self.observer.on_blocked)
        self._source = Source("producer", name=connection_name)
        self.outbox: SyncOutbox | None = None
        """With ``outbox = true``: the local spool used while the broker is away."""
        if settings.outbox or settings.outbox_dir is not None:
            self.outbox = SyncOutbox(
                spool_path(settings, connection_name), delay_levels=self.delay_levels,
                observer=self.observer, max_jobs=settings.outbox_max_jobs,
                fsync=settings.outbox_fsync)
        self.beats: SyncBeats | None = None
        """With the outbox: the producer's heartbeat (its spool's depth and age), sent from a
        daemon thread between ``connect`` and ``close``."""
        if self.outbox is not None:
            self.beats = SyncBeats(settings, connection_name, self.outbox, self.link)

    @property
    def blocked(self) -> bool:
        """True while the broker blocks publishing (memory or disk alarm)."""
        return self.link.blocked

    @property
    def reconnects(self) -> int:
        return self.link.reconnects

    def connect(self) -> None:
        """Connect; with the outbox a broker that does not answer is no error (publishes are
        spooled), and what an earlier run left in the spool is sent first."""
        if self.outbox is None:
            self.link.connect(self.reconnect_timeout)
            return
        if self.beats is not None:
            self.beats.start()
        try:
            self.link.connect(min(self.reconnect_timeout, OUTBOX_CONNECT_WAIT))
        except BrokerUnavailable as exc:
            log.warning("%s; publishes go to the outbox %s", exc, self.outbox.path)
            return
        self.drain(self.reconnect_timeout)

    def drain(self, timeout: float) -> bool:
        """Send what the outbox holds (oldest first, with confirms) for at most ``timeout``
        seconds; True when it is empty."""
        if self.outbox is None:
            return True
        return self.outbox.drain(self.link, time.monotonic() + timeout, self._record)

    def _record_accepted(self, outs: list[Outgoing]) -> None:
        """Record ``accepted`` for ``outs`` (confirmed jobs), holding the caller at most
        ``events_hold``; past it the events are not recorded (logged), the jobs were
        confirmed all the same. After a failure, the next minute's records wait at most
        ``FAILING_EVENTS_WAIT``: a stream that takes no writes must not stall every publish."""
        if not self.settings.job_events or not outs:
            return
        wait = min(self.reconnect_timeout, self.settings.events_hold)
        if time.monotonic() < self._events_failing_until:
            wait = min(wait, FAILING_EVENTS_WAIT)
        if not record_blocking(self.link, self.settings,
                               [accepted_event(o, self._source) for o in outs], wait):
            self._events_failing_until = time.monotonic() + 60.0

    def _record(self, outs: list[Outgoing]) -> None:
        self._record_accepted(outs)

    def close(self) -> None:
        """Close; with the outbox, first try (briefly) to send what it holds (the rest stays
        in the spool for the next run)."""
        try:
            if self.outbox is not None and self.outbox.depth:
                self.drain(min(self.reconnect_timeout, CLOSE_DRAIN))
        finally:
            if self.beats is not None:
                self.beats.close()
            if self.outbox is not None:
                self.outbox.close()
            self.link.close()

    def __enter__(self) -> Producer:
        self.connect()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def publish(
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
        """Publish one job and wait for its confirm (see ``AsyncProducer.publish``)."""
        lock = None
        if unique_for is not None:
            lock = unique_lock(queue, unique_key or job_id, unique_for, if_exists)
            headers = {**(headers or {}), envelope.H_UNIQUE: lock.name}
        out = build(
            queue, payload, delay_levels=self.delay_levels, priority=priority, delay=delay, at=at,
            job_id=job_id, idempotency_key=idempotency_key, headers=headers, webhook=webhook,
        )
        if lock is not None:
            held_by = self._acquire(lock, out.message_id)
            if held_by is not None:
                if lock.if_exists == "return" and held_by:
                    return Published(held_by, out.queue, out.exchange, out.routing_key, existing=True)
                raise DuplicateJob(lock.key, held_by or None)
            try:
                return self._publish(out, queue, wait, timeout)
            except BaseException:
                self.link.purge(lock.name, time.monotonic() + 10)
                raise
        if self.outbox is not None:
            if self.outbox.depth and self.outbox.due_for_try():
                self.drain(DRAIN_PER_PUBLISH)
            if self.outbox.depth or self.link.blocked:  # behind what waits: order is kept
                return self._spool(out, wait, timeout)
        return self._publish(out, queue, wait, timeout)

    def _spool(self, out: Outgoing, wait: bool, timeout: float | None) -> Published:
        assert self.outbox is not None
        return self.outbox.put(out, self.drain, wait=wait,
                               timeout=DEFAULT_WAIT_TIMEOUT if timeout is None else timeout)

    def _acquire(self, lock: UniqueLock, job_id: str) -> str | None:
        """None when the lock was taken; else who holds it ("" when unknown)."""
        deadline = time.monotonic() + self.reconnect_timeout
        for _ in range(3):
            if not self.link.declare_queue(lock.name, lock.arguments, deadline):
                raise PublishError(f"unique key {lock.key!r}: the lock queue could not be declared")
            result = self.link.publish(
                job_id.encode(), exchange="", routing_key=lock.name, deadline=deadline,
                content_type="text/plain", message_id=job_id, timestamp=int(time.time()), headers={})
            if result.ok:
                return None
            if result.outcome is not Outcome.NACKED:
                raise PublishError(f"unique key {lock.key!r}: taking the lock failed: "
                                   f"{result.outcome.value} ({result.detail})")
            held = self.link.peek(lock.name, deadline)
            if held is not None:
                return held.decode("utf-8", "replace")
        return ""

    def _publish(self, out: Outgoing, queue: str, wait: bool, timeout: float | None) -> Published:
        """Publish until confirmed, re-sending after a lost link (at-least-once); without a
        confirm within ``reconnect_timeout`` of the first try (a silent link included),
        :class:`BrokerUnavailable` (with the outbox: spooled after ``OUTBOX_CONNECT_WAIT``)."""
        wait_deadline = time.monotonic() + (DEFAULT_WAIT_TIMEOUT if timeout is None else timeout)
        patience = self.reconnect_timeout if self.outbox is None else OUTBOX_CONNECT_WAIT
        link_deadline: float | None = None
        while True:
            if link_deadline is None:
                link_deadline = time.monotonic() + patience
            result = self.link.publish(
                out.body, exchange=out.exchange, routing_key=out.routing_key,
                deadline=link_deadline,
                content_type=out.content_type, message_id=out.message_id,
                timestamp=out.timestamp, headers=out.headers, priority=out.priority,
            )
            match result.outcome:
                case Outcome.CONFIRMED:
                    self._record_accepted([out])
                    return published(out)
                case Outcome.NACKED:
                    self.observer.on_publish_nack(queue)
                    if wait and time.monotonic() < wait_deadline:
                        time.sleep(BACKPRESSURE_RETRY_INTERVAL)
                        link_deadline = None  # the link answered: a new try has all its time
                        continue
                    raise BackPressure(queue, cap_of(self.topology, queue))
                case Outcome.REFUSED:
                    raise PublishError(f"publish to {queue!r} failed: {result.detail}")
                case Outcome.UNROUTABLE:
                    raise Unroutable(out.exchange, out.routing_key)
                case Outcome.QUEUE_DOWN:
                    raise QueueDown(queue, result.detail)
            if self.outbox is not None:  # unreachable: into the outbox (same id, at-least-once)
                return self._spool(out, wait, timeout)
            if time.monotonic() >= link_deadline:
                raise BrokerUnavailable(
                    f"publish to {queue!r} not confirmed within {patience:g}s (it may or may "
                    f"not have arrived): {result.detail}")
            log.warning("publish of %s interrupted (%s); re-sending", out.message_id, result.detail)

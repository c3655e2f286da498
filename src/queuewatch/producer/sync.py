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
from typing import Any

from queuewatch.broker.blocking import BlockingLink
from queuewatch.broker.publish import Outcome
from queuewatch.config import Settings
from queuewatch.errors import (
    BackPressure,
    BrokerUnavailable,
    PublishError,
    QueueDown,
    Unroutable,
)
from queuewatch.events.blocking import record_blocking
from queuewatch.events.model import Source
from queuewatch.producer._common import (
    BACKPRESSURE_RETRY_INTERVAL,
    DEFAULT_WAIT_TIMEOUT,
    Published,
    accepted_event,
    build,
    cap_of,
    delay_levels_of,
    published,
)
from queuewatch.producer.observer import ProducerObserver
from queuewatch.topology import Topology

log = logging.getLogger(__name__)

DEFAULT_RECONNECT_TIMEOUT = 30.0


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
        self.reconnect_timeout = reconnect_timeout
        self.observer = observer or ProducerObserver()
        self.link = BlockingLink(settings, name=connection_name, on_blocked=self.observer.on_blocked)
        self._source = Source("producer", name=connection_name)

    @property
    def blocked(self) -> bool:
        """True while the broker blocks publishing (memory or disk alarm)."""
        return self.link.blocked

    @property
    def reconnects(self) -> int:
        return self.link.reconnects

    def connect(self) -> None:
        self.link.connect(self.reconnect_timeout)

    def close(self) -> None:
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
    ) -> Published:
        """Publish one job and wait for its confirm (see ``AsyncProducer.publish``)."""
        out = build(
            queue, payload, delay_levels=self.delay_levels, priority=priority, delay=delay, at=at,
            job_id=job_id, idempotency_key=idempotency_key, headers=headers,
        )
        wait_deadline = time.monotonic() + (DEFAULT_WAIT_TIMEOUT if timeout is None else timeout)
        link_deadline: float | None = None
        while True:
            result = self.link.publish(
                out.body, exchange=out.exchange, routing_key=out.routing_key,
                deadline=link_deadline or time.monotonic() + self.reconnect_timeout,
                content_type=out.content_type, message_id=out.message_id,
                timestamp=out.timestamp, headers=out.headers, priority=out.priority,
            )
            match result.outcome:
                case Outcome.CONFIRMED:
                    if self.settings.job_events:
                        record_blocking(self.link, self.settings, [accepted_event(out, self._source)],
                                        self.reconnect_timeout)
                    return published(out)
                case Outcome.NACKED:
                    self.observer.on_publish_nack(queue)
                    if wait and time.monotonic() < wait_deadline:
                        time.sleep(BACKPRESSURE_RETRY_INTERVAL)
                        continue
                    raise BackPressure(queue, cap_of(self.topology, queue))
                case Outcome.REFUSED:
                    raise PublishError(f"publish to {queue!r} failed: {result.detail}")
                case Outcome.UNROUTABLE:
                    raise Unroutable(out.exchange, out.routing_key)
                case Outcome.QUEUE_DOWN:
                    raise QueueDown(queue, result.detail)
            now = time.monotonic()
            link_deadline = link_deadline or now + self.reconnect_timeout
            if now >= link_deadline:
                raise BrokerUnavailable(f"publish to {queue!r} not confirmed: {result.detail}")
            log.warning("publish of %s interrupted (%s); re-sending", out.message_id, result.detail)

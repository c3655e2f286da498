"""A producer's heartbeat: an outbox-enabled producer says how full its spool is.

The same :class:`~queuewatch.telemetry.Heartbeat` as a worker's, on the same telemetry
exchange (routing key ``heartbeat.<producer id>``, transient, about once a second), with
``role = "producer"`` and an :class:`~queuewatch.telemetry.OutboxStatus` (depth, oldest age,
cap, draining, blocked). The monitor lists producers beside workers; the console and the
exporter show their outboxes. A beat needs the broker: while the broker is away (when the
spool fills) none goes out — the producer's own metrics
(:class:`~queuewatch.metrics.producer.PrometheusProducerObserver`) show it then — and the
first beats after it is back show the backlog draining.

The blocking producer (pika, no event loop) sends the same beats from a thread of its own
(:mod:`.sync_beats`): ``outbox`` is then its :class:`~.sync_outbox.SyncOutbox` and ``state``
its pika link (blocked, alive), read as plain attributes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import Protocol

import psutil

from queuewatch.broker.errors import ANY_BROKER_ERROR, close_channel, raise_if_cancelled
from queuewatch.broker.link import BrokerLink
from queuewatch.broker.types import Channel, DeliveryMode, ExchangeType, Message
from queuewatch.telemetry import PRODUCER_ROLE, Heartbeat, OutboxStatus, heartbeat_routing_key

log = logging.getLogger(__name__)

#: Seconds between beats.
INTERVAL = 1.0


class OutboxGauge(Protocol):
    """What a beat reads of an outbox (:class:`~.outbox.Outbox`, :class:`~.sync_outbox.SyncOutbox`)."""

    @property
    def depth(self) -> int: ...
    @property
    def oldest_age(self) -> float | None: ...
    @property
    def max_jobs(self) -> int: ...


class LinkState(Protocol):
    """The producer's link as a beat sees it: is it up, does the broker block it."""

    @property
    def alive(self) -> bool: ...
    @property
    def blocked(self) -> bool: ...


class ProducerBeats:
    """Sends ``producer_id``'s beats over ``link`` until :meth:`close`."""

    def __init__(self, link: BrokerLink, exchange: str, producer_id: str, outbox: OutboxGauge,
                 *, interval: float = INTERVAL, state: LinkState | None = None) -> None:
        self.link = link
        self.state: LinkState = link if state is None else state
        """Whose ``blocked``/``alive`` the beat reports: ``link``'s unless another link
        publishes the jobs (the blocking producer's)."""
        self.exchange = exchange
        self.producer_id = producer_id
        self.outbox = outbox
        self.interval = interval
        self.started_at = time.time()
        self.sent = 0
        self._process = psutil.Process(os.getpid())
        self._channel: Channel | None = None
        self._task: asyncio.Task[None] | None = None

    def status(self) -> OutboxStatus:
        ob = self.outbox
        blocked = self.state.blocked
        depth = ob.depth
        return OutboxStatus(depth=depth, oldest_age=ob.oldest_age, cap=ob.max_jobs,
                            draining=depth > 0 and self.state.alive and not blocked,
                            blocked=blocked)

    def build(self) -> Heartbeat:
        with self._process.oneshot():
            cpu, rss = self._process.cpu_percent(), self._process.memory_info().rss
        return Heartbeat(
            worker_id=self.producer_id, host=socket.gethostname(), pid=os.getpid(),
            sent_at=time.time(), queues=(), concurrency=0, cpu_percent=cpu, rss_bytes=rss,
            interval=self.interval, connection_name=self.producer_id,
            started_at=self.started_at, role=PRODUCER_ROLE, outbox=self.status())

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"heartbeat {self.producer_id}")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        channel, self._channel = self._channel, None
        await close_channel(channel)

    async def beat(self) -> bool:
        """Send one beat now; False when the broker cannot take it (away, or blocking)."""
        if not self.link.alive or self.link.blocked:
            return False  # a publish on a blocked connection would hang
        try:
            if self._channel is None or self._channel.is_closed:
                self._channel = await self.link.channel(timeout=2.0)
                await self._channel.declare_exchange(self.exchange, ExchangeType.TOPIC,
                                                     durable=True)
            exchange = await self._channel.get_exchange(self.exchange, ensure=False)
            await exchange.publish(
                Message(self.build().to_json(), content_type="application/json",
                        delivery_mode=DeliveryMode.NOT_PERSISTENT),
                heartbeat_routing_key(self.producer_id), mandatory=False)
        except ANY_BROKER_ERROR as exc:
            raise_if_cancelled()  # (a stop that landed inside the publish)
            self._channel = None
            log.debug("producer heartbeat not sent: %s", exc)
            return False
        self.sent += 1
        return True

    async def _run(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(self.interval)

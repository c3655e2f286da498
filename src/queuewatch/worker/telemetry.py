"""Worker telemetry: a heartbeat about once a second, and the operator's control queue.

Both ride on the worker's :class:`~queuewatch.broker.link.BrokerLink`: the heartbeat opens
its channel again after a reconnect or a broker-side close, and the control queue is a
subscription of the link (exclusive, so declared again on every connection).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence

import psutil

from queuewatch.broker.errors import ANY_BROKER_ERROR, raise_if_cancelled
from queuewatch.broker.types import Channel as AbstractChannel
from queuewatch.broker.types import DeliveryMode, ExchangeType, Message
from queuewatch.broker.types import IncomingMessage as AbstractIncomingMessage
from queuewatch.broker.types import Queue as AbstractQueue
from queuewatch.telemetry import (
    CONTROL_QUEUE_PREFIX,
    ConsumerStatus,
    ControlCommand,
    Heartbeat,
    InFlightJob,
    control_routing_key,
    heartbeat_routing_key,
)
from queuewatch.worker.outcomes import REASON_CANCELLED
from queuewatch.worker.process import Processor

log = logging.getLogger(__name__)


class HeartbeatSender:
    """Builds and sends :class:`Heartbeat` messages (transient, not confirmed)."""

    def __init__(self, processor: Processor, worker_id: str, queues: Sequence[str],
                 concurrency: int, exchange: str, connection_name: str,
                 interval: float = 1.0,
                 consumers: Callable[[], Sequence[ConsumerStatus]] = tuple) -> None:
        self.processor = processor
        self.worker_id = worker_id
        self.queues = tuple(queues)
        self.concurrency = concurrency
        self.exchange = exchange
        self.connection_name = connection_name
        self.interval = interval
        self.consumers = consumers
        """Per job queue, whether the worker consumes it (read at every beat)."""
        self.started_at = time.time()
        self.host = socket.gethostname()
        self._proc = psutil.Process()
        self._proc.cpu_percent(None)  # prime: the first reading is always 0
        self.sent = 0

    def build(self) -> Heartbeat:
        counts = self.processor.counts.take()
        running = tuple(
            InFlightJob(r.job_id, r.queue, r.attempt, r.started_at)
            for r in list(self.processor.running.values())
        )
        return Heartbeat(
            worker_id=self.worker_id, host=self.host, pid=os.getpid(), sent_at=time.time(),
            queues=self.queues, concurrency=self.concurrency,
            cpu_percent=self._proc.cpu_percent(None), rss_bytes=self._proc.memory_info().rss,
            in_flight=running, succeeded=counts.succeeded, failed=counts.failed,
            retried=counts.retried, dead_lettered=counts.dead_lettered,
            duplicates=counts.duplicates, interval=self.interval,
            connection_name=self.connection_name, started_at=self.started_at,
            consumers=tuple(self.consumers()),
        )

    async def run(self, channel_of: Callable[[], Awaitable[AbstractChannel | None]]) -> None:
        """Beat until cancelled; ``channel_of()`` gives a live channel, or None while the
        link is down (the beat is skipped)."""
        while True:
            channel = await channel_of()
            if channel is not None:
                beat = self.build()
                try:
                    exchange = await channel.get_exchange(self.exchange, ensure=False)
                    await exchange.publish(
                        Message(beat.to_json(), content_type="application/json",
                                         delivery_mode=DeliveryMode.NOT_PERSISTENT),
                        heartbeat_routing_key(self.worker_id), mandatory=False,
                    )
                    self.sent += 1
                except ANY_BROKER_ERROR as exc:
                    raise_if_cancelled()  # (a stop that landed inside the publish)
                    log.debug("heartbeat not sent: %s", exc)
            await asyncio.sleep(self.interval)


def control_queue_name(worker_id: str) -> str:
    return CONTROL_QUEUE_PREFIX + worker_id


def control_declarer(exchange: str, worker_id: str) -> Callable[[AbstractChannel], Awaitable[AbstractQueue]]:
    """Declares this worker's control queue (exclusive, auto-delete) and binds it; for
    ``link.subscribe(..., declare=...)``, which runs it on every (re)connect."""
    async def declare(channel: AbstractChannel) -> AbstractQueue:
        # As `queuewatch declare` makes it (idempotent): a worker on a vhost whose topology
        # was never declared still hears operator commands.
        await channel.declare_exchange(exchange, ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(control_queue_name(worker_id), exclusive=True,
                                            auto_delete=True, durable=False)
        await queue.bind(exchange, routing_key=control_routing_key(worker_id))
        return queue
    return declare


def control_handler(processor: Processor) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
    """The control queue's consumer: runs an operator's command."""
    async def on_command(message: AbstractIncomingMessage) -> None:
        async with message.process(ignore_processed=True):
            try:
                command = ControlCommand.from_json(message.body)
            except (ValueError, TypeError) as exc:
                log.warning("ignoring a control message that is not a command: %s", exc)
                return
            if command.action == "cancel" and command.job_id:
                n = cancel_job(processor, command.job_id, command.reason or REASON_CANCELLED)
                log.info("cancel %s requested by %r: %d running", command.job_id,
                         command.requested_by, n)
            else:
                log.warning("ignoring unknown control action %r", command.action)
    return on_command


def cancel_job(processor: Processor, job_id: str, reason: str = REASON_CANCELLED) -> int:
    """Cancel every running copy of ``job_id``; it is dead-lettered with ``reason``."""
    n = 0
    for entry in list(processor.running.values()):
        if entry.job_id == job_id and not entry.settled and entry.task is not None:
            entry.cancel_reason = reason
            entry.task.cancel()
            n += 1
    return n

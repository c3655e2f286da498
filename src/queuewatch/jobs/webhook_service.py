"""``queuewatch webhooks``: the dispatcher and the delivery worker, run together.

    async with WebhookService(settings, topology) as service:
        await service.wait()          # until service.stop()

It declares ``queuewatch.webhooks`` (with its DLQ and the vhost's delay levels, as any job
queue; given no topology, it takes the number of delay levels the vhost already has: levels
declared a second time with another number would route every delayed job and retry of the
vhost twice), reads the job events through a :class:`~queuewatch.jobs.Jobs`, publishes webhook
jobs with the :class:`~queuewatch.jobs.dispatcher.Dispatcher` and delivers them with
:func:`~queuewatch.jobs.webhooks.delivery_worker`. The two halves only meet through the
queue: deliveries may fail, wait and retry without holding the dispatcher, let alone jobs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal

from queuewatch.broker.connect import connect
from queuewatch.broker.declare import declare_topology, existing_delay_levels
from queuewatch.config import Settings
from queuewatch.errors import ConfigError
from queuewatch.jobs.api import Jobs
from queuewatch.jobs.dispatcher import Dispatcher
from queuewatch.jobs.webhooks import POST_TIMEOUT, delivery_worker, webhooks_topology
from queuewatch.producer import AsyncProducer
from queuewatch.topology import WEBHOOKS_QUEUE, Topology


class WebhookService:
    """Dispatcher + delivery worker for the vhost of ``settings``."""

    def __init__(self, settings: Settings, topology: Topology | None = None, *,
                 concurrency: int = 10, timeout: float = POST_TIMEOUT,
                 start: Literal["end", "first"] = "end", index: Path | str | None = None,
                 **worker_options: Any) -> None:
        if not settings.webhook_secret:
            raise ConfigError("webhook_secret is not set (QUEUEWATCH_WEBHOOK_SECRET): webhooks "
                              "are signed with it, and a receiver verifies them with it")
        self.settings = settings
        self.start_at: Literal["end", "first"] = start
        self.jobs = Jobs(settings, index=index)
        self._given = topology is not None
        """A topology given is the vhost's truth; without one, the vhost's levels are used."""
        self._worker_options = {"concurrency": concurrency, "timeout": timeout, **worker_options}
        self._build(webhooks_topology(topology))
        self.dispatcher: Dispatcher | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False

    def _build(self, topology: Topology) -> None:
        self.topology = topology
        self.producer = AsyncProducer(self.settings, topology,
                                      connection_name="queuewatch-webhooks-dispatcher")
        self.worker = delivery_worker(self.settings, topology, **self._worker_options)

    async def _use_vhost_levels(self) -> None:
        """Given no topology, retry through the delay levels the vhost has (a vhost declared
        with ``delay_levels = 16`` keeps 16), instead of declaring the default number."""
        conn = await connect(self.settings)
        try:
            levels = await existing_delay_levels(conn)
        finally:
            await conn.close()
        if levels and levels != self.topology.delay_levels:
            t = self.topology
            self._build(Topology(queues=t.queues, delay_levels=levels,
                                 telemetry_exchange=t.telemetry_exchange,
                                 control_exchange=t.control_exchange))

    async def declare(self) -> None:
        """Declare the webhooks queue, its DLQ and the delay levels (idempotent)."""
        spec = self.topology.queue(WEBHOOKS_QUEUE)
        only = Topology(queues=(spec,), delay_levels=self.topology.delay_levels,
                        telemetry_exchange=self.topology.telemetry_exchange,
                        control_exchange=self.topology.control_exchange)
        conn = await connect(self.settings)
        try:
            await declare_topology(conn, only, self.settings.effective_vhost)
        finally:
            await conn.close()

    async def start(self) -> None:
        if not self._given:
            await self._use_vhost_levels()
        await self.declare()
        await self.jobs.start()
        await self.producer.connect()
        self.dispatcher = Dispatcher(self.jobs, self.producer, self.topology, start=self.start_at)
        if self._stopped:  # stop() came while starting (a SIGTERM then)
            self.dispatcher.stop()
        self._tasks = [asyncio.create_task(self.dispatcher.run(), name="webhook dispatcher"),
                       asyncio.create_task(self.worker.run(), name="webhook delivery")]

    async def wait(self) -> None:
        """Until :meth:`stop`, or until one half ends with an error (raised here)."""
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()

    def stop(self) -> None:
        self._stopped = True
        if self.dispatcher is not None:
            self.dispatcher.stop()
        self.worker.stop()

    async def close(self) -> None:
        self.stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.producer.close()
        await self.jobs.close()

    async def __aenter__(self) -> WebhookService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

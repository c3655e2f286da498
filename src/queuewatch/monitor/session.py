"""Wiring for the faces (CLI, exporter, TUI): a Monitor with its clients, opened and closed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from queuewatch.broker.connect import connect
from queuewatch.broker.management import ManagementClient
from queuewatch.config import Settings
from queuewatch.monitor.core import Monitor
from queuewatch.monitor.heartbeats import AmqpHeartbeatSource
from queuewatch.topology import Topology

#: Seconds a one-shot command listens for heartbeats before polling (workers beat ~1/s).
DEFAULT_LISTEN = 1.5


@asynccontextmanager
async def open_monitor(
    settings: Settings,
    *,
    heartbeats: bool = True,
    listen: float = 0.0,
    topology: Topology | None = None,
    all_vhosts: bool = False,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[Monitor]:
    """A ready :class:`Monitor`; with ``heartbeats`` it also consumes worker telemetry.

    ``listen`` waits that long after subscribing so the first snapshot already has workers.
    Connection and credential problems surface as typed errors (exit 2 in the CLI).
    """
    async with ManagementClient(settings) as mgmt:
        if not heartbeats:
            yield Monitor(mgmt, settings, clock=clock, topology=topology, all_vhosts=all_vhosts)
            return
        connection = await connect(settings)
        try:
            source = AmqpHeartbeatSource(connection, settings.telemetry_exchange, clock=clock)
            await source.start()
            if listen > 0:
                await asyncio.sleep(listen)
            yield Monitor(
                mgmt, settings, clock=clock, topology=topology, heartbeats=source,
                all_vhosts=all_vhosts,
            )
        finally:
            await connection.close()

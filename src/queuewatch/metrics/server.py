"""The HTTP exporter: a Monitor on a background event loop, served by prometheus_client.

``Exporter(settings).start(port, bind)`` returns the bound port (0 picks a free one); scrapes
run in the HTTP server's thread and take a snapshot through :class:`SnapshotCache`, which
polls on the exporter's loop at most once per poll interval.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

from queuewatch.broker.connect import connect
from queuewatch.broker.management import ManagementClient
from queuewatch.config import Settings
from queuewatch.errors import QueuewatchError
from queuewatch.metrics.collector import QueuewatchCollector, SnapshotCache
from queuewatch.monitor.core import Monitor
from queuewatch.monitor.heartbeats import AmqpHeartbeatSource
from queuewatch.monitor.model import Snapshot
from queuewatch.topology import Topology

log = logging.getLogger(__name__)

DEFAULT_PORT = 9419
DEFAULT_BIND = "127.0.0.1"
#: Seconds between attempts to (re)open the heartbeat connection, and its connect timeout.
HEARTBEAT_RETRY = 30.0
HEARTBEAT_CONNECT_TIMEOUT = 3.0


def build_registry(collector: QueuewatchCollector) -> CollectorRegistry:
    """A registry of its own holding only ``collector`` (no process/platform metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


class Exporter:
    """Owns a background loop with a management client, a Monitor and (optionally) heartbeats."""

    def __init__(
        self,
        settings: Settings,
        *,
        heartbeats: bool = True,
        topology: Topology | None = None,
        max_age: float | None = None,
        all_vhosts: bool = False,
    ) -> None:
        self.settings = settings
        self.want_heartbeats = heartbeats
        self.topology = topology
        self.all_vhosts = all_vhosts
        self.max_age = settings.poll_interval if max_age is None else max_age
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="queuewatch-exporter",
                                        daemon=True)
        self._thread.start()
        self.monitor: Monitor = self._call(self._setup())
        self.cache = SnapshotCache(self._poll, self.loop, self.max_age,
                                   timeout=settings.http_timeout * 2 + 5)
        self.collector = QueuewatchCollector(
            self.cache.get, stale_after=settings.thresholds.heartbeat_stale_seconds
        )
        self.registry = build_registry(self.collector)
        self._server: Any = None
        self._source: AmqpHeartbeatSource | None = None
        self._next_hb_attempt = 0.0

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    async def _setup(self) -> Monitor:
        self._mgmt = ManagementClient(self.settings)
        return Monitor(self._mgmt, self.settings, topology=self.topology,
                       all_vhosts=self.all_vhosts)

    async def _poll(self) -> Snapshot:
        if self.want_heartbeats:
            await self._ensure_heartbeats()
        return await self.monitor.poll()

    async def _ensure_heartbeats(self) -> None:
        source = self._source
        if source is not None and not source.connection.is_closed:
            return
        now = time.monotonic()
        if now < self._next_hb_attempt:
            return
        self._next_hb_attempt = now + HEARTBEAT_RETRY
        try:
            conn = await asyncio.wait_for(connect(self.settings), HEARTBEAT_CONNECT_TIMEOUT)
        except (QueuewatchError, TimeoutError) as exc:
            log.warning("no worker heartbeats for now (%s); retrying in %gs", exc, HEARTBEAT_RETRY)
            return
        source = AmqpHeartbeatSource(conn, self.settings.telemetry_exchange)
        try:
            await source.start()
        except QueuewatchError as exc:
            log.warning("cannot listen to heartbeats (%s)", exc)
            await conn.close()
            return
        self._source = source
        self.monitor.heartbeats = source

    def start(self, port: int = DEFAULT_PORT, bind: str = DEFAULT_BIND) -> int:
        """Serve ``/metrics``; returns the port actually bound."""
        server, _thread = start_http_server(port, addr=bind, registry=self.registry)
        self._server = server
        return int(server.server_port)

    def scrape_once(self) -> Snapshot:
        """The snapshot a scrape would use now (for tools and benchmarks)."""
        return self.cache.get()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self.loop.is_running():
            self._call(self._teardown())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)

    async def _teardown(self) -> None:
        if self._source is not None:
            await self._source.connection.close()
        await self._mgmt.aclose()

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

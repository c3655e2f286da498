"""The HTTP exporter: a monitoring session on a background event loop, served by
prometheus_client.

``Exporter(settings).start(port, bind)`` returns the bound port (0 picks a free one). A
:class:`~queuewatch.metrics.poller.BackgroundPoller` polls on the exporter's loop every poll
interval and renders each snapshot once (:mod:`queuewatch.metrics.exposition`); scrapes run
in the HTTP server's thread and serve the latest snapshot's bytes, never polling or
rendering it themselves (``queuewatch_snapshot_age_seconds``, computed at the scrape, says
how old it is). The
:class:`~queuewatch.monitor.session.MonitorSession` reconnects and subscribes to heartbeats
again by itself after a fault; while its heartbeat feed is down, worker-derived metrics are
left out instead of being judged from a dead feed (see :mod:`queuewatch.metrics.collector`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from prometheus_client import CollectorRegistry

from queuewatch.aio import end_task
from queuewatch.config import Settings
from queuewatch.errors import QueuewatchError
from queuewatch.jobs import Jobs
from queuewatch.jobs.startup import Startup
from queuewatch.metrics.collector import QueuewatchCollector
from queuewatch.metrics.exposition import Exposition
from queuewatch.metrics.poller import BackgroundPoller
from queuewatch.metrics.select import QueueSelector
from queuewatch.monitor.core import Monitor
from queuewatch.monitor.model import Snapshot
from queuewatch.monitor.session import MonitorSession
from queuewatch.topology import Topology
from queuewatch.webconfig import WebConfig, serve_wsgi

log = logging.getLogger(__name__)

DEFAULT_PORT = 9672
DEFAULT_BIND = "127.0.0.1"


def build_registry(collector: QueuewatchCollector) -> CollectorRegistry:
    """A registry of its own holding only ``collector`` (no process/platform metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


class Exporter:
    """Owns a background loop with a :class:`MonitorSession` (heartbeats optional)."""

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
        self.web = WebConfig.load(settings.web_config)
        """TLS and basic auth of ``/metrics`` (checked before anything starts)."""
        self.want_heartbeats = heartbeats
        self.topology = topology
        self.all_vhosts = all_vhosts
        self.max_age = settings.poll_interval if max_age is None else max_age
        self.jobs: Jobs | None = None
        self._jobs_task: asyncio.Future[None] | None = None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="queuewatch-exporter",
                                        daemon=True)
        self._thread.start()
        self.session: MonitorSession = self._call(self._setup())
        self.poller = BackgroundPoller(self.session.poll, self.max_age,
                                       prepare=self._prepare)
        """Polls every ``max_age`` seconds (the poll interval) on the exporter's loop."""
        self.collector = QueuewatchCollector(
            self.poller.get, stale_after=settings.thresholds.heartbeat_stale_seconds,
            last_good=self.poller.last_good, selector=QueueSelector.from_settings(settings),
            lean=settings.export_lean, pace=lambda: self.poller.pace,
        )
        self.registry = build_registry(self.collector)
        self.exposition = Exposition(self.collector, self.registry)
        """Each snapshot rendered once, by the background poll; scrapes serve the bytes."""
        self._call(self.poller.start())
        self._server: Any = None

    def _prepare(self, snap: Snapshot) -> None:
        self.exposition.prepare(snap)

    @property
    def monitor(self) -> Monitor:
        return self.session.monitor

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    async def _setup(self) -> MonitorSession:
        session = MonitorSession(self.settings, topology=self.topology,
                                 heartbeats=self.want_heartbeats, all_vhosts=self.all_vhosts,
                                 name="queuewatch-exporter", keep_history=False)
        await session.start()
        if self.settings.job_events and not self.all_vhosts:
            # Scheduled jobs per queue, from the job events (read in the background: the
            # index follows the stream; a scrape only reads the local index's counts).
            self.jobs = Jobs(self.settings, link=session.link)
            self._jobs_task = asyncio.ensure_future(self._start_jobs(session))
        return session

    async def _start_jobs(self, session: MonitorSession) -> None:
        """Read the job events in the background, waiting for the broker as long as it takes
        (:class:`Startup`: before, a broker away for the first minute left the scheduled
        counts unexported until a restart); only a refusal (credentials, permissions, a
        stream declared otherwise) ends it."""
        assert self.jobs is not None
        startup = Startup(self.jobs)
        try:
            await startup.begin()
        except QueuewatchError as exc:
            log.warning("scheduled job counts not exported: the job events cannot be read (%s)", exc)
            return
        finally:
            await startup.close()
        session.monitor.scheduled = self.jobs.scheduled_counts

    def start(self, port: int = DEFAULT_PORT, bind: str = DEFAULT_BIND) -> int:
        """Serve ``/metrics`` (with the TLS and basic auth of ``settings.web_config``);
        returns the port actually bound."""
        self._server = serve_wsgi(self.exposition.wsgi, port, bind, self.web)
        return int(self._server.server_port)

    def scrape_once(self) -> Snapshot:
        """The snapshot a scrape would use now (for tools and benchmarks; never polls)."""
        return self.poller.get()

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
        await end_task(self._jobs_task)
        if self.jobs is not None:
            await self.jobs.close()
        await self.poller.stop()
        await self.session.aclose()

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

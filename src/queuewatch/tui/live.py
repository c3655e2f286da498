"""The live data source: the monitor, the DLQ core and the operator actions on a real broker.

Clients are opened lazily on the first poll and rebuilt after a failure, so the console
starts while the broker is down and recovers by itself when it comes back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from aio_pika.abc import AbstractConnection

from queuewatch import operator
from queuewatch.broker.connect import connect
from queuewatch.broker.management import ManagementClient
from queuewatch.config import Settings, mask_url
from queuewatch.dlq import DeadLetterFilter, DeadLetterQueue
from queuewatch.dlq.model import DeadLetter
from queuewatch.errors import BrokerError, QueuewatchError
from queuewatch.monitor.core import Monitor
from queuewatch.monitor.heartbeats import AmqpHeartbeatSource
from queuewatch.monitor.history import HistoryPoint
from queuewatch.monitor.model import Snapshot, StuckJob, WorkerStats
from queuewatch.topology import Topology
from queuewatch.tui.source import ConsumerInfo, Progress

log = logging.getLogger(__name__)


class LiveSource:
    """A :class:`~queuewatch.tui.source.DataSource` on the broker ``settings`` point at."""

    def __init__(
        self, settings: Settings, *, heartbeats: bool = True, clock: Callable[[], float] = time.time,
        topology: Topology | None = None,
    ) -> None:
        self.settings = settings
        self.topology = topology
        """Per-queue thresholds (``stuck_after``) for the monitor."""
        self.heartbeats = heartbeats
        self.clock = clock
        self._mgmt: ManagementClient | None = None
        self._monitor: Monitor | None = None
        self._conn: AbstractConnection | None = None
        self._beats: AmqpHeartbeatSource | None = None
        self._stale: list[tuple[ManagementClient | None, AbstractConnection | None]] = []

    @property
    def display_url(self) -> str:
        return mask_url(self.settings.management_url)

    @property
    def vhost(self) -> str:
        return self.settings.effective_vhost

    @property
    def read_only(self) -> bool:
        return self.settings.read_only

    # -- lifecycle -------------------------------------------------------------------------
    async def _monitor_ready(self) -> Monitor:
        if self._monitor is None:
            self._mgmt = ManagementClient(self.settings)
            self._monitor = Monitor(self._mgmt, self.settings, clock=self.clock,
                                    topology=self.topology)
        if self.heartbeats and self._monitor.heartbeats is None:
            try:
                conn = await self._connection()
                beats = AmqpHeartbeatSource(conn, self.settings.telemetry_exchange, clock=self.clock)
                await beats.start()
                self._beats = self._monitor.heartbeats = beats
            except BrokerError as exc:
                # Queues still show without workers; the next poll tries again.
                log.warning("no worker heartbeats: %s", exc)
        return self._monitor

    async def _connection(self) -> AbstractConnection:
        if self._conn is None or self._conn.is_closed:
            self._conn = await connect(self.settings)
            if self._monitor is not None:
                self._monitor.heartbeats = None
        return self._conn

    def set_settings(self, settings: Settings) -> None:
        """Point at another broker/vhost; clients are rebuilt on the next poll."""
        self.settings = settings
        self._forget()

    def _forget(self) -> None:
        self._stale.append((self._mgmt, self._conn))
        self._mgmt = self._monitor = self._conn = self._beats = None

    async def aclose(self) -> None:
        self._forget()
        stale, self._stale = self._stale, []
        for m, c in stale:
            if m is not None:
                await m.aclose()
            if c is not None and not c.is_closed:
                await c.close()

    # -- monitor ---------------------------------------------------------------------------
    async def poll(self) -> Snapshot:
        monitor = await self._monitor_ready()
        return await monitor.poll()

    def history(self, queue: str) -> Sequence[HistoryPoint]:
        return self._monitor.history.get(queue) if self._monitor else ()

    async def vhosts(self) -> list[str]:
        await self._monitor_ready()
        assert self._mgmt is not None
        return sorted(str(v["name"]) for v in await self._mgmt.vhosts())

    async def consumers(self, queue: str) -> list[ConsumerInfo]:
        await self._monitor_ready()
        assert self._mgmt is not None
        out = []
        for c in await self._mgmt.consumers(self.vhost):
            if (c.get("queue") or {}).get("name") != queue:
                continue
            details = c.get("channel_details") or {}
            conn = details.get("connection_name") or details.get("peer_host") or "?"
            out.append(ConsumerInfo(
                tag=str(c.get("consumer_tag", "")), connection=str(conn),
                prefetch=int(c.get("prefetch_count") or 0), ack_required=bool(c.get("ack_required")),
                active=bool(c.get("active", True)),
            ))
        return out

    def set_vhost(self, vhost: str) -> None:
        self.set_settings(self.settings.with_vhost(vhost))

    # -- DLQ -------------------------------------------------------------------------------
    async def _dlq(self, dlq: str) -> DeadLetterQueue:
        await self._monitor_ready()
        return DeadLetterQueue(await self._connection(), self._mgmt, self.settings, dlq)

    async def peek_dlq(self, dlq: str, flt: DeadLetterFilter, limit: int) -> list[DeadLetter]:
        q = await self._dlq(dlq)
        if flt.is_empty:
            return list((await q.peek(0, limit)).items)
        return await q.find(flt, max_results=limit)

    async def replay_dlq(
        self, dlq: str, flt: DeadLetterFilter, *, dry_run: bool, progress: Progress | None = None
    ) -> int:
        q = await self._dlq(dlq)
        report = None if progress is None else (lambda done, _total: progress(done))
        result = await q.replay(flt, dry_run=dry_run, progress=report)
        if result.error and not dry_run:
            raise QueuewatchError(f"replay stopped after {result.replayed}: {result.error}")
        return result.replayed

    async def delete_dlq(self, dlq: str, flt: DeadLetterFilter, *, dry_run: bool) -> int:
        q = await self._dlq(dlq)
        if dry_run:
            return len(await q.find(flt))
        return len(await q.delete(flt.job_ids))

    async def export_dlq(self, dlq: str, flt: DeadLetterFilter, path: Path) -> int:
        return await (await self._dlq(dlq)).export(path)

    # -- operator actions --------------------------------------------------------------------
    async def cancel_job(self, job: StuckJob) -> None:
        await operator.cancel_job(await self._connection(), self.settings, job.job_id, job.worker_id)

    async def terminate_worker(self, worker: WorkerStats) -> None:
        # SIGTERM, a grace period, maybe SIGKILL: blocking, so off the UI's event loop.
        await asyncio.to_thread(
            operator.terminate_worker, self.settings, worker.pid,
            known_pids=frozenset({worker.pid}), worker_id=worker.worker_id,
        )


def with_management_url(settings: Settings, url: str) -> Settings:
    return replace(settings, management_url=url)

"""The live data source: a monitoring session, the DLQ core and the operator actions on a
real broker.

Everything goes through one :class:`~queuewatch.monitor.session.MonitorSession`, opened on
the first poll: it reconnects and subscribes to heartbeats again by itself after a fault, so
the console starts while the broker is down and recovers when it comes back. Actions that
need AMQP take the session's connection with a deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from queuewatch import operator
from queuewatch.aio import wait_for
from queuewatch.broker.types import Connection
from queuewatch.config import Settings, mask_url
from queuewatch.dlq import DeadLetterFilter, DeadLetterQueue, Page, ReplayResult
from queuewatch.dlq.discover import FoundDlq, discover
from queuewatch.dlq.model import DeadLetter
from queuewatch.errors import QueuewatchError
from queuewatch.jobs import Jobs, JobStatus
from queuewatch.jobs.control import cancel_pending
from queuewatch.jobs.control import run_now as run_job_now
from queuewatch.monitor.history import TOTALS, HistoryPoint
from queuewatch.monitor.history_file import KeptHistory, history_path
from queuewatch.monitor.model import Snapshot, StuckJob, WorkerStats
from queuewatch.monitor.session import ACTION_TIMEOUT, LinkState, MonitorSession
from queuewatch.topology import Topology
from queuewatch.tui.source import ConsumerInfo, Progress, Replayed

log = logging.getLogger(__name__)


class LiveSource:
    """A :class:`~queuewatch.tui.source.DataSource` on the broker ``settings`` point at."""

    def __init__(
        self, settings: Settings, *, heartbeats: bool = True, clock: Callable[[], float] = time.time,
        topology: Topology | None = None, action_timeout: float = ACTION_TIMEOUT,
    ) -> None:
        self.settings = settings
        self.topology = topology
        """Per-queue thresholds (``stuck_after``) for the monitor."""
        self.heartbeats = heartbeats
        self.clock = clock
        self.action_timeout = action_timeout
        """Bound on the wait for an AMQP connection for a DLQ or operator action (seconds)."""
        self._session: MonitorSession | None = None
        self._retired: list[MonitorSession] = []
        self._jobs: Jobs | None = None
        self._jobs_lock = asyncio.Lock()
        """One reader is opened at a time (the Scheduled view and a timeline may ask at once)."""
        self._kept: KeptHistory | None = None
        """The chart history of earlier runs (per broker and vhost, in the state dir)."""

    @property
    def display_url(self) -> str:
        if self._session is not None:
            return self._session.mgmt.display_url
        return mask_url(self.settings.management_url)

    @property
    def vhost(self) -> str:
        return self.settings.effective_vhost

    @property
    def read_only(self) -> bool:
        return self.settings.read_only

    @property
    def link_state(self) -> LinkState | None:
        """What the session reaches now (None before the first poll)."""
        return None if self._session is None else self._session.link_state

    # -- lifecycle -------------------------------------------------------------------------
    async def _ready(self) -> MonitorSession:
        retired, self._retired = self._retired, []
        for old in retired:
            await old.aclose()
        if self._session is None:
            self._session = MonitorSession(
                self.settings, topology=self.topology, heartbeats=self.heartbeats,
                clock=self.clock, name="queuewatch-console")
            await self._session.start()
        if self._kept is None:
            self._kept = KeptHistory(
                history_path(self.settings.state_dir, self.settings.management_url, self.vhost),
                self.settings.history_size, self.clock)
            await self._kept.load()
        return self._session

    def set_settings(self, settings: Settings) -> None:
        """Point at another broker/vhost; the session is rebuilt on the next poll."""
        self.settings = settings
        self._kept = None
        if self._session is not None:
            self._retired.append(self._session)
            self._session = None

    async def job_status(self, job_id: str) -> JobStatus:
        return await (await self._jobs_reader()).status(job_id)

    async def scheduled_jobs(self, limit: int) -> list[JobStatus]:
        return await (await self._jobs_reader()).scheduled(limit=limit)

    async def cancel_scheduled(self, job_id: str) -> str:
        return (await cancel_pending(await self._jobs_reader(), job_id)).detail

    async def run_now(self, job_id: str) -> str:
        return (await run_job_now(await self._jobs_reader(), job_id)).detail

    async def _jobs_reader(self) -> Jobs:
        """From the job events: the reader is opened on first use (its index follows the
        stream from then on) and kept for the vhost."""
        async with self._jobs_lock:
            if self._jobs is not None and self._jobs.settings != self.settings:
                await self._jobs.close()
                self._jobs = None
            if self._jobs is None:
                jobs = Jobs(self.settings)
                try:
                    await wait_for(jobs.start(self.action_timeout),
                                           self.action_timeout + 1)
                except (QueuewatchError, TimeoutError) as exc:
                    await jobs.close()
                    raise QueuewatchError(f"the job events cannot be read: {exc}") from exc
                self._jobs = jobs
            return self._jobs

    async def aclose(self) -> None:
        if self._kept is not None and self._session is not None:
            await self._kept.save(self._session.monitor.history)
        if self._jobs is not None:
            await self._jobs.close()
            self._jobs = None
        self.set_settings(self.settings)
        retired, self._retired = self._retired, []
        for old in retired:
            await old.aclose()

    # -- monitor ---------------------------------------------------------------------------
    async def poll(self) -> Snapshot:
        session = await self._ready()
        snapshot = await session.poll()
        if self._kept is not None:
            await self._kept.save_due(session.monitor.history, snapshot.queues)
        return snapshot

    def history(self, queue: str) -> Sequence[HistoryPoint]:
        live = self._session.monitor.history.get(queue, self.vhost) if self._session else ()
        return live if self._kept is None else self._kept.points((self.vhost, queue), live)

    def totals(self) -> Sequence[HistoryPoint]:
        live = self._session.monitor.history.vhost_totals(self.vhost) if self._session else ()
        return live if self._kept is None else self._kept.points((self.vhost, TOTALS), live)

    async def vhosts(self) -> list[str]:
        mgmt = (await self._ready()).mgmt
        return sorted(str(v["name"]) for v in await mgmt.vhosts())

    async def consumers(self, queue: str) -> list[ConsumerInfo]:
        mgmt = (await self._ready()).mgmt
        out = []
        for c in await mgmt.consumers(self.vhost):
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
    async def _connection(self) -> Connection:
        return await (await self._ready()).connection(self.action_timeout)

    async def _dlq(self, dlq: str, force: bool = False) -> DeadLetterQueue:
        session = await self._ready()
        conn = await session.connection(self.action_timeout)
        return DeadLetterQueue(conn, session.mgmt, self.settings, dlq, force=force)

    async def find_dlqs(self) -> list[FoundDlq]:
        return await discover((await self._ready()).mgmt, self.vhost)

    async def peek_dlq(self, dlq: str, flt: DeadLetterFilter, limit: int) -> list[DeadLetter]:
        q = await self._dlq(dlq)
        if flt.is_empty:
            return list((await q.peek(0, limit)).items)
        return await q.find(flt, max_results=limit)

    async def replay_dlq(
        self, dlq: str, flt: DeadLetterFilter, *, dry_run: bool, progress: Progress | None = None
    ) -> Replayed:
        q = await self._dlq(dlq)
        report = None if progress is None else (lambda done, _total: progress(done))
        result = await q.replay(flt, dry_run=dry_run, progress=report)
        if result.error and not dry_run:
            raise QueuewatchError(f"replay stopped after {result.replayed}: {result.error}")
        kept = [s for s in result.skipped if s.why != "stopped"]
        if kept and (not dry_run or result.replayed == 0):
            # Say why, as the CLI does (it exits 1): an unroutable route, no known route...
            # A dry run that would replay none of them says it before any dialog.
            why = "; ".join(f"{s.job_id or f'#{s.position}'}: {s.why}{f' ({s.detail})' if s.detail else ''}"
                            for s in kept[:3])
            more = f" and {len(kept) - 3} more" if len(kept) > 3 else ""
            done = "nothing to replay" if dry_run else f"replayed {result.replayed} of {result.matched}"
            raise QueuewatchError(f"{done}; kept in {dlq}: {why}{more}")
        return Replayed(result.replayed, 0 if dry_run else result.in_doubt,
                        tuple(m.describe() for m in q.moved_back))

    async def delete_dlq(self, dlq: str, flt: DeadLetterFilter, *, dry_run: bool) -> int:
        q = await self._dlq(dlq)
        if dry_run:
            return len(await q.find(flt))
        return len(await q.delete(flt.job_ids))

    async def export_dlq(self, dlq: str, flt: DeadLetterFilter, path: Path) -> int:
        return await (await self._dlq(dlq)).export(path, flt=flt)

    # -- any queue: the DLQ core's read, purge and move; the operator's pause and test job ---
    async def peek_queue(self, queue: str, limit: int, *, force: bool = False) -> Page:
        return await (await self._dlq(queue, force)).peek(0, limit)

    async def queue_depth(self, queue: str) -> int:
        return await (await self._dlq(queue)).depth()

    async def purge_queue(self, queue: str) -> int:
        return await (await self._dlq(queue)).purge()

    async def move_queue(self, queue: str, to: str, *, dry_run: bool,
                         force: bool = False, progress: Progress | None = None) -> ReplayResult:
        report = None if progress is None else (lambda done, _total: progress(done))
        return await (await self._dlq(queue, force)).move(to, dry_run=dry_run, progress=report)

    async def pause_queue(self, queue: str, paused: bool) -> None:
        change = operator.pause_queue if paused else operator.resume_queue
        await change(await self._connection(), self.settings, queue)

    async def publish_test_job(self, queue: str) -> str:
        return (await operator.publish_test_job(self.settings, queue)).job_id

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

"""Where the console gets its data: the live monitor, or a fixed list of snapshots.

The app only talks to a :class:`DataSource`. :class:`LiveSource` wraps the headless core
(the monitor's ``poll()``, the DLQ API, the operator actions); :class:`SnapshotSource`
replays canned :class:`~queuewatch.monitor.model.Snapshot` values, for deterministic
rendering tests and benchmarks (it is not a fake broker: it has no DLQ and refuses actions).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from queuewatch.dlq import Page, ReplayResult
from queuewatch.dlq.discover import FoundDlq
from queuewatch.dlq.filters import DeadLetterFilter
from queuewatch.dlq.model import DeadLetter
from queuewatch.errors import QueuewatchError
from queuewatch.jobs.state import JobStatus
from queuewatch.monitor.history import HistoryPoint, QueueHistory
from queuewatch.monitor.model import QueueStats, Snapshot, StuckJob, WorkerStats

Progress = Callable[[int], None]


@dataclass(frozen=True)
class ConsumerInfo:
    """One consumer of a queue, as the broker lists it."""

    tag: str
    connection: str
    """The client's connection name (or peer address)."""
    prefetch: int
    ack_required: bool
    active: bool = True


@dataclass(frozen=True)
class Replayed:
    """What a DLQ replay from the console did (or, dry, would do)."""

    count: int
    """Dead letters replayed (or that would be)."""
    in_doubt: int = 0
    """Up to this many may be both back in their queue and still in the DLQ (see
    :attr:`queuewatch.dlq.ReplayResult.in_doubt`): duplicates, never losses."""
    moved_back: tuple[str, ...] = ()
    """What the replay first moved back, said in full: dead letters an interrupted shovel
    replay had held back (:attr:`queuewatch.dlq.DeadLetterQueue.moved_back`)."""


class DataSource(Protocol):
    """What the console needs from the core."""

    @property
    def display_url(self) -> str:
        """Broker address with the password masked."""
        ...

    @property
    def vhost(self) -> str: ...

    @property
    def read_only(self) -> bool: ...

    async def poll(self) -> Snapshot: ...

    def history(self, queue: str) -> Sequence[HistoryPoint]: ...

    def totals(self) -> Sequence[HistoryPoint]:
        """The vhost's totals per poll (job queues' ready, unacked, in/s, out/s), oldest first."""
        ...

    async def vhosts(self) -> list[str]: ...

    async def consumers(self, queue: str) -> list[ConsumerInfo]: ...

    def set_vhost(self, vhost: str) -> None: ...

    async def find_dlqs(self) -> list[FoundDlq]:
        """The vhost's dead-letter queues, found from the dead-letter arguments and policies
        of the queues feeding them (and the ``.dlq`` / ``.XQ`` conventions)."""
        ...

    async def peek_dlq(self, dlq: str, flt: DeadLetterFilter, limit: int) -> list[DeadLetter]:
        """Dead letters of ``dlq`` matching ``flt``; reading loses nothing."""
        ...

    async def replay_dlq(
        self, dlq: str, flt: DeadLetterFilter, *, dry_run: bool, progress: Progress | None = None
    ) -> Replayed:
        """Replay matching dead letters to their original route: how many (would) move."""
        ...

    async def delete_dlq(self, dlq: str, flt: DeadLetterFilter, *, dry_run: bool) -> int: ...

    async def export_dlq(self, dlq: str, flt: DeadLetterFilter, path: Path) -> int: ...

    async def peek_queue(self, queue: str, limit: int, *, force: bool = False) -> Page:
        """The first ``limit`` messages of any queue, read and put back (the DLQ core's
        read: refused with ``QueueHasConsumers`` unless ``force``)."""
        ...

    async def queue_depth(self, queue: str) -> int: ...

    async def purge_queue(self, queue: str) -> int: ...

    async def move_queue(self, queue: str, to: str, *, dry_run: bool,
                         force: bool = False, progress: Progress | None = None) -> ReplayResult:
        """Every message of ``queue`` to the queue ``to`` (confirmed publish, then ack)."""
        ...

    async def pause_queue(self, queue: str, paused: bool) -> None: ...

    async def publish_test_job(self, queue: str) -> str:
        """Publish a small test job through the producer; returns its job id."""
        ...

    async def cancel_job(self, job: StuckJob) -> None: ...

    async def terminate_worker(self, worker: WorkerStats) -> None: ...

    async def job_status(self, job_id: str) -> JobStatus:
        """A job's status and timeline by id, from the job events."""
        ...

    async def scheduled_jobs(self, limit: int) -> list[JobStatus]:
        """Jobs waiting for their time (delayed or retrying), soonest first, from the job
        events (raises when they are off or cannot be read)."""
        ...

    async def cancel_scheduled(self, job_id: str) -> str:
        """Cancel a job that waits (queued, delayed, retrying); what was done, for a person."""
        ...

    async def run_now(self, job_id: str) -> str:
        """Publish a delayed job now and skip its delayed copy; what was done."""
        ...

    async def aclose(self) -> None: ...


class SnapshotSource:
    """Replays ``snapshots`` one per poll, then keeps returning the last one."""

    def __init__(
        self, snapshots: Sequence[Snapshot], *, vhost: str = "/", read_only: bool = False,
        vhost_names: Sequence[str] = (),
        dead_letters: Mapping[str, Sequence[DeadLetter]] | None = None,
    ) -> None:
        if not snapshots:
            raise ValueError("SnapshotSource needs at least one snapshot")
        self._snapshots = list(snapshots)
        self._next = 0
        self.polls = 0
        self.display_url = snapshots[0].broker.url
        self.vhost = vhost
        self.read_only = read_only
        self._vhost_names = list(vhost_names) or [vhost]
        self.dead_letters = dict(dead_letters or {})
        self._history = QueueHistory(120)

    def record_history(self, taken_at: float, queues: Sequence[QueueStats]) -> None:
        """Add one poll to the history as if it had been polled (benchmarks fill it)."""
        self._history.record(taken_at, queues)

    def push(self, snapshot: Snapshot) -> None:
        """Queue one more snapshot for the next poll (benchmarks feed it this way)."""
        self._snapshots.append(snapshot)

    async def poll(self) -> Snapshot:
        self.polls += 1
        snap = self._snapshots[min(self._next, len(self._snapshots) - 1)]
        self._next = min(self._next + 1, len(self._snapshots) - 1)
        self._history.record(snap.taken_at, snap.queues)
        return snap

    def history(self, queue: str) -> Sequence[HistoryPoint]:
        return self._history.get(queue)

    def totals(self) -> Sequence[HistoryPoint]:
        return self._history.vhost_totals(self.vhost)

    async def vhosts(self) -> list[str]:
        return list(self._vhost_names)

    async def consumers(self, queue: str) -> list[ConsumerInfo]:
        q = self._snapshots[min(self._next, len(self._snapshots) - 1)].queue(queue)
        n = q.consumers if q else 0
        return [ConsumerInfo(f"ctag-{queue}-{i}", f"worker-{i} (canned)", 8, True) for i in range(n)]

    def set_vhost(self, vhost: str) -> None:
        self.vhost = vhost

    async def find_dlqs(self) -> list[FoundDlq]:
        snap = self._snapshots[min(self._next, len(self._snapshots) - 1)]
        return [FoundDlq(q.name, how=("name ends in .dlq",), messages=q.ready,
                         consumers=q.consumers) for q in snap.queues if q.is_dlq]

    async def peek_dlq(self, dlq: str, flt: DeadLetterFilter, limit: int) -> list[DeadLetter]:
        return [dl for dl in self.dead_letters.get(dlq, ()) if flt.matches(dl)][:limit]

    async def replay_dlq(
        self, dlq: str, flt: DeadLetterFilter, *, dry_run: bool, progress: Progress | None = None
    ) -> Replayed:
        return Replayed(self._dry_run_only(dlq, flt, dry_run, "dlq replay"))

    async def delete_dlq(self, dlq: str, flt: DeadLetterFilter, *, dry_run: bool) -> int:
        return self._dry_run_only(dlq, flt, dry_run, "dlq delete")

    def _dry_run_only(self, dlq: str, flt: DeadLetterFilter, dry_run: bool, action: str) -> int:
        if not dry_run:
            raise QueuewatchError(f"{action}: canned snapshots have no broker to change")
        return sum(1 for dl in self.dead_letters.get(dlq, ()) if flt.matches(dl))

    async def export_dlq(self, dlq: str, flt: DeadLetterFilter, path: Path) -> int:
        raise QueuewatchError("export: canned snapshots have no broker to read")

    async def peek_queue(self, queue: str, limit: int, *, force: bool = False) -> Page:
        letters = tuple(self.dead_letters.get(queue, ()))[:limit]
        return Page(queue, 0, limit, len(self.dead_letters.get(queue, ())), letters)

    async def queue_depth(self, queue: str) -> int:
        q = self._snapshots[min(self._next, len(self._snapshots) - 1)].queue(queue)
        return q.ready or 0 if q else 0

    async def purge_queue(self, queue: str) -> int:
        raise QueuewatchError("purge: canned snapshots have no broker to change")

    async def move_queue(self, queue: str, to: str, *, dry_run: bool,
                         force: bool = False, progress: Progress | None = None) -> ReplayResult:
        if not dry_run:
            raise QueuewatchError("move: canned snapshots have no broker to change")
        n = await self.queue_depth(queue)
        return ReplayResult(queue, True, n, n, n)

    async def pause_queue(self, queue: str, paused: bool) -> None:
        raise QueuewatchError("pause: canned snapshots have no broker to change")

    async def publish_test_job(self, queue: str) -> str:
        raise QueuewatchError("test job: canned snapshots have no broker to change")

    async def cancel_job(self, job: StuckJob) -> None:
        raise QueuewatchError("cancel: canned snapshots have no broker to change")

    async def terminate_worker(self, worker: WorkerStats) -> None:
        raise QueuewatchError("terminate: canned snapshots have no worker to stop")

    async def job_status(self, job_id: str) -> JobStatus:
        raise QueuewatchError("job timeline: canned snapshots have no job events to read")

    scheduled: Sequence[JobStatus] | None = None
    """Canned waiting jobs for the Scheduled view (None: no job events)."""

    async def scheduled_jobs(self, limit: int) -> list[JobStatus]:
        if self.scheduled is None:
            raise QueuewatchError("canned snapshots have no job events to read")
        return list(self.scheduled)[:limit]

    async def cancel_scheduled(self, job_id: str) -> str:
        raise QueuewatchError("cancel: canned snapshots have no broker to change")

    async def run_now(self, job_id: str) -> str:
        raise QueuewatchError("run now: canned snapshots have no broker to change")

    async def aclose(self) -> None:
        return None

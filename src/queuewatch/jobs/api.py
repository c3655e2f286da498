"""Ask about a job by id: :class:`Jobs` (asyncio) and :class:`JobsClient` (blocking).

``await jobs.status(id)`` answers from the local index after making sure it holds every
event recorded before the call (one marker round trip through the stream); ``result(id)``
waits for the job's outcome as it arrives on the stream — no polling — and raises the job's
own failure when it was dead-lettered. The first start on a host reads the stream from its
beginning (1,000,000 events: see BENCHMARKS.md); later starts read only what is new.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from queuewatch.aio import wait_for
from queuewatch.broker.link import BrokerLink
from queuewatch.config import Settings
from queuewatch.errors import ConfigError, QueuewatchError
from queuewatch.events.model import Event
from queuewatch.events.recorder import EventRecorder
from queuewatch.jobs.index import JobIndex, index_path
from queuewatch.jobs.state import JobState, JobStatus
from queuewatch.jobs.tail import EventTail

T = TypeVar("T")

#: Longest job id accepted (RabbitMQ's shortstr limit for ``message_id``).
MAX_JOB_ID = 255
#: How long a status call waits for the stream to answer its marker (seconds).
SYNC_TIMEOUT = 10.0
#: Least time a ``result()``/``wait()`` with a shorter timeout gives that marker for an id
#: the index does not hold (one round trip takes milliseconds when the stream answers).
UNSEEN_SYNC = 1.0


class JobFailed(QueuewatchError):
    """``result()`` of a job that was dead-lettered or cancelled: its own error."""

    def __init__(self, status: JobStatus) -> None:
        self.status = status
        self.error_type = status.error_type
        what = "was cancelled" if status.state is JobState.CANCELLED else "failed"
        detail = f"{status.error_type}: {status.error}" if status.error_type else (status.reason or "")
        super().__init__(f"job {status.job_id} {what} after attempt {status.attempt}: {detail}")


class JobUnknown(QueuewatchError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} is unknown: never recorded, or past retention")


class ResultExpired(QueuewatchError):
    pass


class EventsUnavailable(QueuewatchError):
    """The job events stream did not answer (missing, or the broker is unreachable)."""


class ResultTimeout(QueuewatchError, TimeoutError):
    """``result()`` / ``wait()`` ran out of time; ``status`` is the job as last read."""

    def __init__(self, message: str, status: JobStatus | None = None) -> None:
        super().__init__(message)
        self.status = status


def check_job_id(job_id: object) -> str:
    """A job id as given, or ConfigError for one that cannot be an id."""
    if not isinstance(job_id, str) or not job_id:
        raise ConfigError("a job id must be a non-empty string")
    if len(job_id.encode()) > MAX_JOB_ID:
        raise ConfigError(f"a job id is at most {MAX_JOB_ID} bytes (got {len(job_id.encode())})")
    if any(ord(c) < 32 or ord(c) == 127 for c in job_id):
        raise ConfigError("a job id must not contain control characters")
    return job_id


class Jobs:
    """Status, timelines and results of jobs, from the job events stream.

    ``async with Jobs(settings) as jobs: await jobs.status("42")``. Pass ``link`` to share a
    connection; ``index`` to choose the index file (default: in the state directory)."""

    def __init__(self, settings: Settings, *, link: BrokerLink | None = None,
                 index: Path | str | None = None, sync_timeout: float = SYNC_TIMEOUT) -> None:
        if not settings.job_events:
            raise ConfigError("job events are off (job_events = false): no status, results or "
                              "timelines to read")
        self.settings = settings
        self.sync_timeout = sync_timeout
        self._own_link = link is None
        self.link = link or BrokerLink(settings, name="queuewatch-jobs")
        path = index or index_path(settings.state_dir, settings.effective_vhost, settings.events_stream)
        self.index = JobIndex(path, max_age=settings.events_max_age, result_ttl=settings.result_ttl)
        self.recorder = EventRecorder(self.link, settings)
        self.tail = EventTail(self.link, settings, self.index, self.recorder)
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self.tail.listeners.append(self._wake_waiters)

    async def start(self, timeout: float = 60.0, *, rounds: int | None = None) -> None:
        """Connect, then read the stream up to now (the first time: all of it). May be
        called again after it failed (see :mod:`.startup`): the stream is subscribed once.
        ``rounds``: give up connecting after that many failed rounds of attempts (a one-shot
        command: see :meth:`BrokerLink.ensure`), else after ``timeout``."""
        if self._own_link:
            await self.link.open(timeout, rounds=rounds)
        if self.tail.subscription is None:
            await self.tail.start()
        await self._sync(timeout)

    async def close(self) -> None:
        await self.tail.stop()
        await self.recorder.close(1.0)
        if self._own_link:
            await self.link.close()
        self.index.close()

    async def __aenter__(self) -> Jobs:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- asking ------------------------------------------------------------------------
    async def status(self, job_id: str, *, fresh: bool = True) -> JobStatus:
        """The job's state and timeline. ``fresh``: first read every event recorded before
        this call (one round trip); without it, answer from what the index holds."""
        check_job_id(job_id)
        if fresh:
            await self._sync()
        return self.index.status(job_id)

    async def _sync(self, timeout: float | None = None) -> None:
        timeout = self.sync_timeout if timeout is None else timeout
        try:
            await self.tail.sync(timeout)
        except TimeoutError:
            raise EventsUnavailable(self._why_not_synced(timeout)) from None

    def _why_not_synced(self, timeout: float) -> str:
        stream = self.settings.events_stream
        vhost = self.settings.effective_vhost
        sub = self.tail.subscription
        state = sub.state if sub is not None else None
        if state is not None and state.cause == "queue_missing":
            return (f"the job events stream {stream!r} does not exist in vhost {vhost!r} "
                    "(deleted?): start a worker or run `queuewatch declare` to create it")
        reason = f" ({state.reason})" if state is not None and not state.live and state.reason else ""
        return (f"the job events stream {stream!r} in vhost {vhost!r} did not answer within "
                f"{timeout:g}s{reason}")

    async def result(self, job_id: str, timeout: float | None = None) -> Any:
        """Wait (at most ``timeout`` s; None: forever) for the job to finish; its handler's
        return value (None when it returned nothing). Raises :class:`JobFailed` when it was
        dead-lettered or cancelled, :class:`JobUnknown`, :class:`ResultExpired`,
        :class:`ResultTimeout`."""
        status = await self.wait(job_id, timeout)
        if status.state is not JobState.SUCCEEDED:
            raise JobFailed(status)
        if status.result_expired:
            raise ResultExpired(f"the result of job {job_id} expired (result_ttl = "
                                f"{self.settings.result_ttl:g}s)")
        return status.result

    async def wait(self, job_id: str, timeout: float | None = None) -> JobStatus:
        """Wait until the job finished (succeeded, dead-lettered, cancelled).

        ``timeout`` bounds the whole call, the first read of the stream up to now included.
        That read alone is bounded by ``sync_timeout`` (past it: :class:`EventsUnavailable`);
        a shorter ``timeout`` cuts it short, and the answer is what the index holds: the
        job's outcome, or :class:`ResultTimeout` with its state as last read (``timeout=0``:
        at once, without that read). For an id the index does not hold, unknown cannot be
        told from not yet read without the stream's answer: that read gets at least
        :data:`UNSEEN_SYNC` s, then :class:`EventsUnavailable`."""
        check_job_id(job_id)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        status = await self._status_by(job_id, timeout)
        if not status.known:
            raise JobUnknown(job_id)
        while not status.state.finished:
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(job_id, []).append(fut)
            try:
                left = None if deadline is None else max(deadline - loop.time(), 0.0)
                await wait_for(fut, left)
            except TimeoutError as exc:
                raise ResultTimeout(f"job {job_id} did not finish within {timeout:g}s "
                                    f"(it is {status.state.value})", status) from exc
            finally:
                waiting = self._waiters.get(job_id, [])
                if fut in waiting:
                    waiting.remove(fut)
                if not waiting:
                    self._waiters.pop(job_id, None)
            status = self.index.status(job_id)
        return status

    async def _status_by(self, job_id: str, timeout: float | None) -> JobStatus:
        """:meth:`status`, its read of the stream up to now cut short at ``timeout`` when
        that is shorter than ``sync_timeout``; then the index's answer while the stream is
        subscribed. An id the index does not hold gets that read for at least
        :data:`UNSEEN_SYNC` s: without it, unknown and not yet read look alike."""
        if timeout is None or timeout >= self.sync_timeout:
            return await self.status(job_id)
        held = self.index.status(job_id).known
        bound = timeout if held else min(self.sync_timeout, max(timeout, UNSEEN_SYNC))
        try:
            if bound > 0:  # (no marker for a call that may not wait at all)
                await self.tail.sync(bound)
                return self.index.status(job_id)
        except TimeoutError:
            pass
        sub = self.tail.subscription
        if not held or sub is None or not sub.state.live:
            raise EventsUnavailable(self._why_not_synced(bound))
        return self.index.status(job_id)

    def _wake_waiters(self, events: list[Event]) -> None:
        for e in events:
            for fut in self._waiters.get(e.job_id, ()):
                if not fut.done():
                    fut.set_result(None)

    async def scheduled(self, queue: str | None = None, limit: int = 1000) -> list[JobStatus]:
        """Jobs waiting for their time (scheduled, or retrying), soonest first."""
        await self._sync()
        waiting = (JobState.SCHEDULED, JobState.RETRYING)
        rows = self.index.jobs_in(waiting, queue, limit)
        statuses = [self.index.status(job) for job, *_ in rows]
        return [s for s in statuses if s.state in waiting]  # the table is a hint: fold decides

    def scheduled_counts(self) -> dict[str, int]:
        """Jobs waiting for their time (scheduled or retrying) per target queue, as the index
        holds them now (no broker round trip: for a monitor that polls)."""
        out: dict[str, int] = {}
        for (queue, _state), n in self.index.counts((JobState.SCHEDULED, JobState.RETRYING)).items():
            out[queue] = out.get(queue, 0) + n
        return out

    async def watch(self, *, job_id: str | None = None, queue: str | None = None,
                    after: tuple[int, int] | None = None) -> AsyncIterator[Event]:
        """Events as they are recorded (for one job, one queue, or all), first those after
        stream position ``after`` that the index holds (resumption)."""
        inbox: asyncio.Queue[list[Event]] = asyncio.Queue()
        self.tail.listeners.append(inbox.put_nowait)
        try:
            last = after
            for e in self.index.events_after(after, limit=100_000):
                if _match(e, job_id, queue):
                    yield e
                last = self.index.position_of(e.event_id) or last
            while True:
                for e in await inbox.get():
                    pos = self.index.position_of(e.event_id)
                    if last is not None and pos is not None and pos <= last:
                        continue
                    if _match(e, job_id, queue):
                        yield e
        finally:
            self.tail.listeners.remove(inbox.put_nowait)


def _match(e: Event, job_id: str | None, queue: str | None) -> bool:
    return (job_id is None or e.job_id == job_id) and (queue is None or e.queue == queue)


class JobsClient:
    """The blocking twin of :class:`Jobs` (runs it on a loop in a background thread)."""

    def __init__(self, settings: Settings, *, index: Path | str | None = None,
                 timeout: float = 60.0) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="queuewatch-jobs",
                                        daemon=True)
        self._thread.start()
        self.jobs = Jobs(settings, index=index)
        try:
            self._call(self.jobs.start(timeout), timeout + 5)
        except BaseException:
            self._stop_loop()
            raise

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def status(self, job_id: str) -> JobStatus:
        return self._call(self.jobs.status(job_id))

    def result(self, job_id: str, timeout: float | None = None) -> Any:
        return self._call(self.jobs.result(job_id, timeout))

    def scheduled(self, queue: str | None = None) -> list[JobStatus]:
        return self._call(self.jobs.scheduled(queue))

    def close(self) -> None:
        try:
            self._call(self.jobs.close(), 10)
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> JobsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""What ``queuewatch schedules list`` (and any other face) shows of each schedule: its
timing, whether it is paused, its last run with the outcome of that run's job (from the job
events), and its next run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from queuewatch.broker.link import BrokerLink
from queuewatch.config import Settings
from queuewatch.errors import QueuewatchError
from queuewatch.schedules.book import Entry
from queuewatch.schedules.scheduler import next_run
from queuewatch.schedules.store import ScheduleStore, now_ms

T = TypeVar("T")


@dataclass(frozen=True)
class ScheduleView:
    name: str
    queue: str
    when: str
    paused: bool
    missed: str
    origin: str
    last_tick_ms: int | None
    last_job: str | None
    last_fired_ms: int | None
    outcome: str | None
    """The last run's job state (``succeeded``, ``running``, ``dead_lettered``, ...);
    None when job events are off or nothing ran yet."""
    next_ms: int | None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def view_of(entry: Entry, outcome: str | None, now: int | None = None) -> ScheduleView:
    s = entry.schedule
    return ScheduleView(s.name, s.queue, s.when, entry.paused, s.missed, entry.origin,
                        entry.last_tick_ms, entry.last_job, entry.last_fired_ms, outcome,
                        next_run(entry, now))


async def with_store(settings: Settings, action: Callable[[ScheduleStore], Awaitable[T]],
                     *, by: str = "cli", timeout: float = 30.0) -> T:
    """Open a link, read the schedule streams up to now, run ``action(store)``, close."""
    link = BrokerLink(settings, name="queuewatch-schedules")
    await link.open(timeout)
    store = ScheduleStore(link, by=by)
    try:
        if not await store.start():
            raise QueuewatchError("the schedule streams could not be read in time")
        return await action(store)
    finally:
        await store.close()
        await link.close()


async def list_schedules(settings: Settings) -> tuple[list[ScheduleView], str | None]:
    """Every schedule (by name) and the scheduler that leads (None: none ever did)."""

    async def go(store: ScheduleStore) -> tuple[list[ScheduleView], str | None]:
        outcomes: dict[str, str] = {}
        entries = sorted(store.book.entries.values(), key=lambda e: e.schedule.name)
        jobs_to_ask = [e.last_job for e in entries if e.last_job]
        if settings.job_events and jobs_to_ask:
            from queuewatch.jobs import Jobs

            async with Jobs(settings, link=store.link) as jobs:
                for job_id in jobs_to_ask:
                    outcomes[job_id] = (await jobs.status(job_id, fresh=False)).state.value
        now = now_ms()
        views = [view_of(e, outcomes.get(e.last_job or ""), now) for e in entries]
        return views, store.book.leader

    return await with_store(settings, go)

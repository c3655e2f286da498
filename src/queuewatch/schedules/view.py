"""What ``queuewatch schedules list`` (and any other face) shows of each schedule: its
timing, whether it is paused, its last run with the outcome of that run's job (from the job
events), and its next run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from queuewatch.aio import wait_for
from queuewatch.broker.errors import (
    CHANNEL_ERRORS,
    LINK_OR_AMQP_ERRORS,
    ChannelNotFound,
    close_channel,
)
from queuewatch.broker.link import BrokerLink
from queuewatch.config import Settings
from queuewatch.errors import QueuewatchError
from queuewatch.schedules.book import Entry
from queuewatch.schedules.scheduler import next_run
from queuewatch.schedules.spec import Schedule
from queuewatch.schedules.store import ScheduleStore, now_ms

if TYPE_CHECKING:
    from queuewatch.jobs import Jobs

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
    schedule: Schedule | None = field(default=None, compare=False, repr=False)
    """The whole definition (a face that edits it starts from it)."""

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "schedule"}


def view_of(entry: Entry, outcome: str | None, now: int | None = None) -> ScheduleView:
    s = entry.schedule
    return ScheduleView(s.name, s.queue, s.when, entry.paused, s.missed, entry.origin,
                        entry.last_tick_ms, entry.last_job, entry.last_fired_ms, outcome,
                        next_run(entry, now), s)


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


@dataclass(frozen=True)
class ScheduleListing:
    """Every schedule, and who fires them."""

    schedules: list[ScheduleView]
    leader: str | None
    """The scheduler that took the lead last (from the ledger; None: none ever did)."""
    leader_running: bool | None
    """Whether a scheduler leads now (its leader queue exists); None: could not be asked."""

    @property
    def leader_text(self) -> str:
        if self.leader_running is False:
            return "no scheduler running"
        if self.leader_running is None:
            return f"{self.leader or 'none yet'} (not checked)"
        return self.leader or "a scheduler (name not read yet)"


async def leader_running(link: BrokerLink) -> bool | None:
    """True when a scheduler owns the leader queue now (it exists: no scheduler runs
    without it); None when the broker cannot say."""
    from queuewatch.schedules.scheduler import LEADER_QUEUE

    return await queue_exists(link, LEADER_QUEUE)


async def queue_exists(link: BrokerLink, queue: str) -> bool | None:
    """Whether ``queue`` exists in the link's vhost (passive declare: 'locked' by another
    connection means it exists, 'not found' that it does not); None when the broker cannot
    say."""
    try:
        channel = await link.channel(timeout=5.0)
    except LINK_OR_AMQP_ERRORS:
        return None
    try:
        await wait_for(channel.declare_queue(queue, passive=True), 5.0)
        return True
    except ChannelNotFound:
        return False
    except CHANNEL_ERRORS:
        return True  # RESOURCE_LOCKED: another connection owns it, so it exists
    except LINK_OR_AMQP_ERRORS:
        return None
    finally:
        await close_channel(channel)


async def listing_of(store: ScheduleStore, jobs: Jobs | None,
                     now: int | None = None) -> ScheduleListing:
    """What ``schedules list`` and the console show, from a store that has read the
    streams (and the job events for the last runs' outcomes, when given)."""
    outcomes: dict[str, str] = {}
    entries = sorted(store.book.entries.values(), key=lambda e: e.schedule.name)
    if jobs is not None:
        for job_id in (e.last_job for e in entries if e.last_job):
            outcomes[job_id] = (await jobs.status(job_id, fresh=False)).state.value
    now = now_ms() if now is None else now
    views = [view_of(e, outcomes.get(e.last_job or ""), now) for e in entries]
    return ScheduleListing(views, store.book.leader, await leader_running(store.link))


async def list_schedules(settings: Settings) -> ScheduleListing:
    """Every schedule (by name), the scheduler that leads and whether one runs now."""

    async def go(store: ScheduleStore) -> ScheduleListing:
        if settings.job_events and any(e.last_job for e in store.book.entries.values()):
            from queuewatch.jobs import Jobs

            async with Jobs(settings, link=store.link) as jobs:
                return await listing_of(store, jobs)
        return await listing_of(store, None)

    return await with_store(settings, go)

"""Where the Schedules view gets its schedules and sends its changes.

:class:`LiveSchedules` keeps one link open on the broker the console watches: a
:class:`~queuewatch.schedules.store.ScheduleStore` that has read the schedule streams and
follows them live, and a job-events reader for the last runs' outcomes. Changes go through
:func:`queuewatch.schedules.changes.apply_change` — the same function as ``queuewatch
schedules add|change|pause|resume|remove``. :class:`CannedSchedules` shows a fixed listing
(snapshot tests) and refuses changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from queuewatch.aio import wait_for
from queuewatch.broker.link import BrokerLink
from queuewatch.config import Settings
from queuewatch.errors import QueuewatchError
from queuewatch.jobs import Jobs
from queuewatch.schedules.changes import ScheduleChange, apply_change
from queuewatch.schedules.store import ScheduleStore
from queuewatch.schedules.view import ScheduleListing, listing_of

#: Longest wait for the broker when the view opens or a change is written (seconds).
OPEN_TIMEOUT = 15.0


class SchedulesSource(Protocol):
    async def listing(self) -> ScheduleListing: ...

    async def change(self, change: ScheduleChange) -> str:
        """Write ``change`` (refused under read-only, audited); what was done, in one line."""
        ...

    async def aclose(self) -> None: ...


class LiveSchedules:
    """Schedules on the broker ``settings()`` points at (read again after a vhost switch)."""

    def __init__(self, settings: Callable[[], Settings]) -> None:
        self._settings = settings
        self._open_for: Settings | None = None
        self._link: BrokerLink | None = None
        self._store: ScheduleStore | None = None
        self._jobs: Jobs | None = None
        self._lock = asyncio.Lock()

    async def _ready(self) -> ScheduleStore:
        async with self._lock:
            settings = self._settings()
            if self._store is not None and self._open_for == settings:
                return self._store
            await self._close()
            link = BrokerLink(settings, name="queuewatch-console schedules")
            try:
                await link.open(OPEN_TIMEOUT)
                store = ScheduleStore(link, by="console")
                if not await store.start(OPEN_TIMEOUT):
                    raise QueuewatchError("the schedule streams could not be read in time")
                if settings.job_events:
                    jobs = Jobs(settings, link=link)
                    await wait_for(jobs.start(OPEN_TIMEOUT), OPEN_TIMEOUT + 1)
                    self._jobs = jobs
            except (QueuewatchError, TimeoutError):
                if self._jobs is not None:
                    await self._jobs.close()
                    self._jobs = None
                await link.close()
                raise
            self._link, self._store, self._open_for = link, store, settings
            return store

    async def listing(self) -> ScheduleListing:
        store = await self._ready()
        return await listing_of(store, self._jobs)

    async def change(self, change: ScheduleChange) -> str:
        settings = self._settings()
        store = await self._ready()
        done = await apply_change(settings, change, origin="console", store=store)
        await store.definitions.catch_up(OPEN_TIMEOUT)  # the listing after it shows it
        return done

    async def _close(self) -> None:
        if self._jobs is not None:
            await self._jobs.close()
        if self._store is not None:
            await self._store.close()
        if self._link is not None:
            await self._link.close()
        self._link = self._store = self._jobs = None
        self._open_for = None

    async def aclose(self) -> None:
        async with self._lock:
            await self._close()


class CannedSchedules:
    """A fixed listing; changes are refused (nothing to change)."""

    def __init__(self, listing: ScheduleListing, *, read_only: bool = False) -> None:
        self._listing = listing
        self.read_only = read_only

    async def listing(self) -> ScheduleListing:
        return self._listing

    async def change(self, change: ScheduleChange) -> str:
        raise QueuewatchError("canned snapshots have no schedules to change")

    async def aclose(self) -> None:
        return None


def schedules_for(source: object) -> SchedulesSource:
    """The schedules of a console data source: its own ``schedules`` when it has one (a
    canned source given a listing), live ones for a live source, else an empty listing."""
    own = getattr(source, "schedules", None)
    if own is not None:
        return own  # type: ignore[no-any-return]
    from queuewatch.tui.live import LiveSource

    if isinstance(source, LiveSource):
        live = source
        return LiveSchedules(lambda: live.settings)
    return CannedSchedules(ScheduleListing([], None, None))

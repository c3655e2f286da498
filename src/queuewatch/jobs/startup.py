"""Answering before the broker does: :class:`Startup` reads the job events in the background.

``queuewatch serve`` listens at once, as the exporter does, and starts its :class:`Jobs`
here: wait for the broker through the link (its one reconnect policy: backoff with full
jitter and a cap), then read the job events stream up to now, again after any failure, for
as long as it takes. Until then a question about a job is answered "not yet" with the reason
(:meth:`Startup.wait` raises :class:`NotReady`, the HTTP face makes it a 503); a request
that arrives while nothing has failed yet (the first connect under way, the first read of
the stream) waits for it, at most ``sync_timeout``, as a status call waits for the stream.

What waiting cannot mend ends the start instead (:attr:`Startup.task` raises it): the broker
refusing the credentials, the vhost or the permissions, or a job events stream declared
with other arguments. Once ready, the :class:`Jobs` keeps itself up to date through the link
(see :mod:`.tail`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from queuewatch.aio import end_task, wait_for
from queuewatch.broker.errors import LINK_ERRORS, LINK_OR_AMQP_ERRORS, LinkLost
from queuewatch.config import mask_url
from queuewatch.errors import BrokerError, BrokerUnavailable
from queuewatch.jobs.api import EventsUnavailable, Jobs

log = logging.getLogger(__name__)

#: Seconds between two looks at the link while it has not answered (for the reason shown).
LOOK_EVERY = 1.0
#: Seconds between two looks for a failure while a request waits for the start.
REQUEST_LOOK = 0.1
#: What a later try can mend: the broker away or the link broken, the stream not answering.
RETRYABLE: tuple[type[BaseException], ...] = (
    BrokerUnavailable, LinkLost, EventsUnavailable, *LINK_ERRORS)


class NotReady(EventsUnavailable):
    """The job events are not read up to now yet: the broker has not answered since the
    start, or the first read of the stream is not done. The reason says which."""


class Startup:
    """Starts ``jobs`` in the background (see the module docstring). One event loop."""

    def __init__(self, jobs: Jobs, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.jobs = jobs
        self.clock = clock
        self.ready = asyncio.Event()
        self.started_at = clock()
        self.error: BaseException | None = None
        """Why the last try failed after the broker answered (None: no failure yet)."""
        self.task: asyncio.Task[None] | None = None
        self._reported: set[str] = set()

    def begin(self) -> asyncio.Task[None]:
        """Start trying (returns at once); the task ends when ready, or with what waiting
        cannot mend."""
        if self.task is None:
            self.started_at = self.clock()
            self.task = asyncio.create_task(self._run(), name="queuewatch jobs start")
        return self.task

    async def close(self) -> None:
        await end_task(self.task)

    # -- state -------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """``starting`` until first ready, then ``ok`` while the link is up, ``reconnecting``
        while it is not."""
        if not self.ready.is_set():
            return "starting"
        return "ok" if self.jobs.link.alive else "reconnecting"

    @property
    def waited(self) -> float:
        return self.clock() - self.started_at

    def reason(self) -> str:
        """Why nothing can be answered yet (credentials masked by the link's messages)."""
        waited = f"for {self.waited:.0f} s"
        link = self.jobs.link
        if not link.alive:
            gone = link.last_error or f"connecting to {', '.join(map(mask_url, link.addresses))}"
            return f"the broker has not answered yet ({waited}): {gone}"
        if self.error is not None:
            return (f"the broker answered, but the job events stream could not be read yet "
                    f"({waited}): {self.error}")
        return (f"reading the job events stream up to now ({waited}; "
                f"{self.jobs.tail.applied} events so far)")

    def _failing(self) -> bool:
        """A failure is known: a request need not wait for this try to tell it."""
        task = self.task
        return (self.jobs.link.last_error is not None or self.error is not None
                or (task is not None and task.done()))

    async def wait(self, timeout: float) -> None:
        """Return once ready; :class:`NotReady` with the reason at once while a failure is
        known, else after ``timeout`` seconds."""
        if self.ready.is_set():
            return
        deadline = self.clock() + timeout
        while not self.ready.is_set():
            left = deadline - self.clock()
            if left <= 0 or self._failing():
                raise NotReady(self.reason())
            try:
                await wait_for(self.ready.wait(), min(left, REQUEST_LOOK))
            except TimeoutError:
                pass

    # -- the background start ---------------------------------------------------------
    async def _run(self) -> None:
        jobs = self.jobs
        backoff = jobs.link.policy.backoff()
        while True:
            await self._until_connected()
            self.error = None
            try:
                await jobs.start(jobs.sync_timeout)
            except RETRYABLE as exc:
                self.error = exc
                self._report(f"the job events cannot be read yet: {exc}; trying again")
                await backoff.sleep()
                continue
            except LINK_OR_AMQP_ERRORS as exc:  # a channel refused by the broker: not a fault
                raise BrokerError(f"the job events stream {jobs.settings.events_stream!r} "
                                  f"cannot be used: {exc}") from exc
            self.ready.set()
            if self._reported:
                log.info("the job events are read up to now (after %.0f s); answering",
                         self.waited)
            return

    async def _until_connected(self) -> None:
        """Wait for the link; raise the broker's refusal (credentials, vhost) at once."""
        while True:
            try:
                await self.jobs.link.ensure(LOOK_EVERY)
                return
            except BrokerUnavailable:
                why = self.jobs.link.last_error
                if why is not None:
                    self._report(f"the broker has not answered yet: {why}; trying again")

    def _report(self, text: str) -> None:
        if text not in self._reported:  # once per reason, not once per try
            self._reported.add(text)
            log.warning("%s", text)

"""The exporter's background poll: one snapshot every poll interval, on the exporter's loop.

A scrape never polls. It reads the latest result (:meth:`BackgroundPoller.get`): the last
snapshot, or the last poll's error while the broker cannot be polled (the collector then
answers ``queuewatch_up 0`` and still shows the last good snapshot's age). Only the very
first scrape after start waits, for the first poll, at most ``first_wait`` seconds: that is
waiting for the background poll, not starting one. Polls never overlap; the next one is
scheduled ``interval`` after the last ended, and after a poll slower than the interval the
pause stretches (:mod:`queuewatch.monitor.pacing`; :attr:`BackgroundPoller.pace` says so)
instead of piling polls onto the broker. ``prepare`` (the exporter's render of the
snapshot) runs in a thread after each poll, before scrapes see the new snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable

from queuewatch.aio import end_task
from queuewatch.errors import BrokerUnavailable, QueuewatchError
from queuewatch.monitor.core import poll_forever
from queuewatch.monitor.model import Snapshot
from queuewatch.monitor.pacing import Pace

log = logging.getLogger(__name__)

#: Shortest pause between two background polls (seconds), whatever the interval asked.
MIN_INTERVAL = 0.1
#: Seconds the first scrape waits for the first background poll (Prometheus's default
#: scrape timeout is 10 s).
FIRST_WAIT = 8.0


class BackgroundPoller:
    """Runs ``poll`` on the loop :meth:`start` is awaited on, every ``interval`` seconds; thread-safe :meth:`get`."""

    def __init__(
        self,
        poll: Callable[[], Awaitable[Snapshot]],
        interval: float,
        *,
        first_wait: float = FIRST_WAIT,
        prepare: Callable[[Snapshot], None] | None = None,
    ) -> None:
        self._poll = poll
        self._prepare = prepare
        self.pace: Pace | None = None
        """The pause chosen after the last good poll (stretched after a slow poll)."""
        self.interval = max(interval, MIN_INTERVAL)
        self.first_wait = first_wait
        self._lock = threading.Lock()
        self._first = threading.Event()
        self._snapshot: Snapshot | None = None
        self._good: Snapshot | None = None
        self._error: QueuewatchError | None = None
        self._task: asyncio.Task[None] | None = None
        self.polls = 0
        """Polls started so far (scrapes never add to it)."""
        self.last_poll_seconds: float | None = None

    async def start(self) -> None:
        """Start polling in the background (on the loop; returns at once)."""
        if self._task is None:
            self._task = asyncio.create_task(
                poll_forever(self._one, self._keep, self.interval, on_error=self._failed,
                             on_pace=self._paced),
                name="queuewatch exporter poll")

    async def _one(self) -> Snapshot:
        self.polls += 1
        started = time.perf_counter()
        try:
            return await self._poll()
        except QueuewatchError:
            raise
        except Exception as exc:  # a bug must not end the background poll: log, report, go on
            log.exception("background poll failed unexpectedly")
            raise BrokerUnavailable(f"poll failed: {type(exc).__name__}: {exc}") from exc
        finally:
            self.last_poll_seconds = time.perf_counter() - started

    def _paced(self, pace: Pace) -> None:
        if pace.stretched and (self.pace is None or not self.pace.stretched):
            log.warning("%s", pace.text())
        self.pace = pace

    async def _keep(self, snap: Snapshot) -> None:
        if self._prepare is not None:
            try:
                await asyncio.to_thread(self._prepare, snap)
            except Exception:  # a bug in rendering must not end the background poll
                log.exception("rendering the snapshot failed; scrapes will render it")
        with self._lock:
            self._snapshot = self._good = snap
            self._error = None
        self._first.set()

    def _failed(self, exc: QueuewatchError) -> None:
        log.warning("poll failed: %s", exc)
        with self._lock:
            self._error = exc
        self._first.set()

    def get(self) -> Snapshot:
        """The latest snapshot; the latest poll's error when it failed. Never polls."""
        if not self._first.wait(self.first_wait):
            raise BrokerUnavailable(f"no snapshot yet: the first poll has run {self.first_wait:g}s")
        with self._lock:
            if self._error is not None:
                raise self._error
            assert self._snapshot is not None
            return self._snapshot

    def last_good(self) -> Snapshot | None:
        """The last snapshot polled successfully (its age tells how stale it is)."""
        return self._good

    async def stop(self) -> None:
        """Stop polling (on the loop); a poll in progress is cancelled."""
        task, self._task = self._task, None
        await end_task(task)

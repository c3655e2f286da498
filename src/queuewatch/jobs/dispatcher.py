"""The webhook dispatcher: terminal job events -> webhook jobs on ``queuewatch.webhooks``.

It reads the job events index in stream order from its own cursor (kept in the index's
``meta`` table), and for every terminal event (succeeded, dead-lettered, cancelled, skipped)
of a job that has a webhook — its own (the ``x-qw-webhook`` header), else its queue's —
publishes one webhook job with a deterministic id (``webhook-<job id>-<event id>``) and waits
for the broker's confirms. Only then does the cursor move past those events, so a crash
loses nothing: the next start re-reads from the cursor and publishes again, and the delivery
worker's idempotency store drops what was already delivered. An end read before the job's
``accepted`` (which carries its own webhook) waits for it a moment (:meth:`Dispatcher.step`). It never touches the job
queues themselves: a receiver that is down slows nothing but its own deliveries.

Run one dispatcher per vhost (``queuewatch webhooks``). The first start on a host (no
cursor yet) begins at the end of what the index holds: jobs finished before webhooks were
ever dispatched get none (``start="first"`` sends them too).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Literal

from queuewatch.aio import wait_for
from queuewatch.errors import QueuewatchError
from queuewatch.events import model as ev
from queuewatch.events.model import Event
from queuewatch.jobs.api import Jobs
from queuewatch.jobs.reorder import FIRST_KINDS
from queuewatch.jobs.state import fold, repeats_success
from queuewatch.jobs.webhooks import outcome_body, webhook_for, webhook_job_id
from queuewatch.producer import AsyncProducer
from queuewatch.topology import WEBHOOKS_QUEUE, Topology

log = logging.getLogger(__name__)

CURSOR_KEY = "webhook_cursor"
#: Events read from the index per step.
BATCH = 500
#: Seconds between looks at the index when no new event woke the dispatcher.
IDLE_WAIT = 1.0
#: Pause after a step that could not publish (broker down, queue missing) before retrying.
RETRY_PAUSE = 2.0
#: Seconds a job's end waits for the job's ``accepted`` (which carries its own webhook) when
#: the stream holds them the other way round (see :mod:`.reorder`).
HOLD = 5.0
#: Events older than this (by their own clock, in ms) are not held: a backlog, or a foreign
#: producer's jobs (which have no ``accepted``), pass at once.
HOLD_MAX_AGE_MS = 60_000

Position = tuple[int, int]


class Dispatcher:
    """Publishes a webhook job for every finished job that has a webhook (module docstring)."""

    def __init__(self, jobs: Jobs, producer: AsyncProducer, topology: Topology | None, *,
                 start: Literal["end", "first"] = "end", batch: int = BATCH) -> None:
        self.jobs = jobs
        self.index = jobs.index
        self.producer = producer
        self.topology = topology
        self.batch = batch
        self.published = 0
        """Webhook jobs published (and confirmed) since start."""
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._held: dict[str, float] = {}
        """Terminal events waiting for their job's ``accepted``: when first seen (monotonic)."""
        self._sent: set[str] = set()
        """Webhook jobs published beyond a held event (the cursor stays before it)."""
        if self.cursor is None and start == "end":
            self._save(self._last_position())

    # -- the cursor --------------------------------------------------------------------
    @property
    def cursor(self) -> Position | None:
        """The stream position of the last event handled (None: before the first)."""
        row = self.index.db.execute("SELECT value FROM meta WHERE key=?", (CURSOR_KEY,)).fetchone()
        if not row:
            return None
        off, _, idx = str(row[0]).partition(":")
        return (int(off), int(idx)) if off.lstrip("-").isdigit() and idx.lstrip("-").isdigit() else None

    def _save(self, position: Position | None) -> None:
        value = "-1:-1" if position is None else f"{position[0]}:{position[1]}"
        self.index.db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                              "value=excluded.value", (CURSOR_KEY, value))

    def _last_position(self) -> Position | None:
        row = self.index.db.execute(
            "SELECT off, idx FROM events ORDER BY off DESC, idx DESC LIMIT 1").fetchone()
        return (int(row[0]), int(row[1])) if row else None

    # -- running -----------------------------------------------------------------------
    async def run(self) -> None:
        """Dispatch until :meth:`stop`; a step that fails is retried from the same cursor."""
        self.jobs.tail.listeners.append(self._on_events)
        try:
            while not self._stop.is_set():
                self._wake.clear()  # before reading: events arriving during a step wake the next
                try:
                    handled = await self.step()
                except (QueuewatchError, TimeoutError) as exc:
                    log.warning("webhook dispatch paused: %s (retrying from the same events)", exc)
                    await self._sleep(RETRY_PAUSE)
                    continue
                if handled < self.batch:
                    await self._sleep(IDLE_WAIT)
        finally:
            self.jobs.tail.listeners.remove(self._on_events)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        try:
            await wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass

    def _on_events(self, events: list[Event]) -> None:
        if any(e.kind in ev.TERMINAL for e in events):
            self._wake.set()

    async def step(self) -> int:
        """Handle the next events after the cursor: publish their webhook jobs, wait for the
        confirms, then move the cursor. Returns the events handled (0 while one is held).

        A fast job's end can reach the stream before its producer's ``accepted``, which
        carries the job's own webhook. Such an end is held (at most :data:`HOLD` s): the
        cursor stays before it, so a restart reads it again, while the events after it are
        handled now (their webhook jobs published once: their ids are remembered)."""
        cursor = self.cursor
        events = self.index.events_after(cursor, limit=self.batch)
        if not events:
            return 0
        sends, ids = [], []
        held_at: int | None = None
        for i, e in enumerate(events):
            if e.kind not in ev.TERMINAL or e.queue == WEBHOOKS_QUEUE:
                continue
            mine = self.index.events_of(e.job_id)
            # its accepted counts whatever its clock said (the producer's, not the worker's)
            history = [x for x in mine if x.at_ms <= e.at_ms or x.kind in FIRST_KINDS]
            if e.data.get("duplicate_key") is not None and repeats_success(
                    e, fold(e.job_id, [x for x in history if x.event_id != e.event_id])):
                continue  # its webhook went out when it succeeded
            status = fold(e.job_id, history, result_ttl=self.index.result_ttl)
            url = webhook_for(status, self.topology)
            if url is None:
                if not any(x.kind in FIRST_KINDS for x in mine) and self._hold(e):
                    held_at = i if held_at is None else held_at
                continue
            job_id = webhook_job_id(e.job_id, e.event_id)
            if job_id in self._sent:
                continue
            payload = {"url": url, "body": outcome_body(status, e)}
            sends.append(self.producer.publish(WEBHOOKS_QUEUE, payload, job_id=job_id, wait=True))
            ids.append(job_id)
        if sends:
            await asyncio.gather(*sends)
            self.published += len(sends)
        if held_at is not None:
            self._sent.update(ids)
            if held_at > 0 and (before := self.index.position_of(events[held_at - 1].event_id)):
                self._save(before)
            return 0
        self._sent.clear()
        self._held.clear()
        last = self.index.position_of(events[-1].event_id)
        if last is not None:
            self._save(last)
        return len(events)

    def _hold(self, e: Event) -> bool:
        """Whether ``e`` (an end with no webhook known, of a job with no ``accepted`` in the
        index) still waits for that ``accepted``."""
        if time.time() * 1000 - e.at_ms > HOLD_MAX_AGE_MS:
            return False
        first = self._held.setdefault(e.event_id, time.monotonic())
        return time.monotonic() - first < HOLD

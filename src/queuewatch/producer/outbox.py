"""The producer outbox (setting ``outbox = true``, or ``outbox_dir``): while the broker is
unreachable or blocks publishing, ``publish`` writes the job to a local durable spool
(:mod:`.spool`) and returns at once with its id (``Published.spooled``); a background task
sends the spool, oldest first, with confirms, once the broker is back.

- **Durable before it returns**: a spooled publish returns after its spool commit (group
  commit: publishes made at the same moment share one fsync), so a kill -9 of the producer
  loses none of them; the next producer with the same name drains them.
- **At-least-once**: a job is deleted from the spool after its confirm; a crash between the
  two sends that batch (at most :data:`BATCH` jobs) again, with the same job ids.
- **Delays kept**: a delayed job (``delay=``/``at=``) keeps its due time; the delay left is
  computed when it is sent (a job whose time has passed goes straight to its queue).
  Priorities and headers are kept as they were.
- **A cap**: at ``outbox_max_jobs`` jobs a publish raises :class:`OutboxFull` (a
  :class:`BackPressure`), or with ``wait=True`` waits for room.
- A job the broker will never take (no such queue, refused) is moved to the spool's
  ``failed`` table, logged, and counted (:attr:`Outbox.failed`) — kept, not dropped.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from queuewatch import envelope
from queuewatch.aio import wait_for
from queuewatch.broker.link import BrokerLink
from queuewatch.broker.publish import ConfirmedPublisher, Outcome, Properties, PublishResult
from queuewatch.config import Settings
from queuewatch.errors import BackPressure, ConfigError, PublishError
from queuewatch.events.model import Source
from queuewatch.events.recorder import EventRecorder
from queuewatch.producer._common import Outgoing, Published, accepted_event, published
from queuewatch.producer.observer import ProducerObserver
from queuewatch.producer.spool import Spool, Spooled
from queuewatch.topology import delay_entry_exchange, delay_routing_key

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Jobs sent per drain round (the most that may be sent twice after a crash).
BATCH = 256
#: Default cap on spooled jobs.
DEFAULT_MAX_JOBS = 100_000
#: Pause after a round that could not send everything (queue full, link lost) (seconds).
RETRY_PAUSE = 0.5
_POLL = 0.05


class OutboxFull(BackPressure):
    """The outbox holds ``outbox_max_jobs`` jobs: publish later, or with ``wait=True``."""

    def __init__(self, cap: int, path: Path) -> None:
        self.queue = "(outbox)"
        self.cap = str(cap)
        Exception.__init__(self, f"the producer outbox {str(path)!r} is full ({cap} jobs, "
                                 "outbox_max_jobs) and the broker is not taking jobs; retry "
                                 "later or publish with wait=True")


def spool_path(settings: Settings, name: str) -> Path:
    base = settings.outbox_dir or settings.state_dir / "outbox"
    return Path(base) / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".sqlite")


def rebase(item: Spooled, now_ms: int, levels: int) -> Outgoing:
    """The job as it is sent now: a delayed job with the delay that is left."""
    out = item.out
    if item.due_ms is None:
        return out
    headers = dict(out.headers)
    left = item.due_ms - now_ms
    if left <= 0:
        headers.pop(envelope.H_TARGET, None)
        headers.pop(envelope.H_DELAY_MS, None)
        return replace(out, exchange="", routing_key=out.queue, headers=headers)
    headers[envelope.H_DELAY_MS] = left
    headers[envelope.H_PUBLISHED_MS] = now_ms
    return replace(out, exchange=delay_entry_exchange(levels), headers=headers,
                   routing_key=delay_routing_key(math.ceil(left / 1000), levels))


class Outbox:
    def __init__(self, path: Path, *, link: BrokerLink, publisher: ConfirmedPublisher,
                 recorder: EventRecorder | None, source: Source, delay_levels: int,
                 observer: ProducerObserver, max_jobs: int = DEFAULT_MAX_JOBS,
                 fsync: bool = True) -> None:
        if max_jobs < 1:
            raise ConfigError(f"outbox_max_jobs must be >= 1 (got {max_jobs})")
        self.path = path
        self.spool = Spool(path, fsync=fsync)
        self.link = link
        self.publisher = publisher
        self.recorder = recorder
        self.source = source
        self.delay_levels = delay_levels
        self.observer = observer
        self.max_jobs = max_jobs
        self.depth = self.spool.depth()
        """Jobs in the spool (and being written to it)."""
        self.oldest_ms = self.spool.oldest_ms()
        self.failed = self.spool.failed()
        self.sent = 0
        self._exec = ThreadPoolExecutor(1, thread_name_prefix="queuewatch-outbox")
        self._pending: list[tuple[Outgoing, asyncio.Future[None]]] = []
        self._committer: asyncio.Task[None] | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()
        self._closing = False

    @property
    def oldest_age(self) -> float | None:
        """Seconds the oldest spooled job has waited (None: the spool is empty)."""
        if self.depth == 0 or self.oldest_ms is None:
            return None
        return max(time.time() - self.oldest_ms / 1000, 0.0)

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._exec, fn, *args)

    # -- spooling --------------------------------------------------------------------------
    async def put(self, out: Outgoing, *, wait: bool = False, timeout: float = 30.0) -> Published:
        """Write ``out`` to the spool; returns once it is durable."""
        deadline = time.monotonic() + timeout
        while self.depth >= self.max_jobs:
            if not wait or time.monotonic() >= deadline:
                raise OutboxFull(self.max_jobs, self.path)
            await asyncio.sleep(_POLL)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((out, fut))
        self.depth += 1
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit())
        await fut
        self._kick.set()
        return replace(published(out), spooled=True)

    async def _commit(self) -> None:
        """Write every waiting job in one transaction, again while more came meanwhile."""
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._run(self.spool.put, [o for o, _ in batch])
            except (TypeError, ValueError) as exc:  # a header JSON cannot hold
                self._settle(batch, PublishError(f"a job could not be written to the outbox: {exc}"))
            except (sqlite3.Error, OSError) as exc:  # the disk
                self._settle(batch, PublishError(f"the outbox {str(self.path)!r} could not be "
                                                 f"written: {exc}"))
            else:
                if self.oldest_ms is None:
                    self.oldest_ms = int(time.time() * 1000)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_result(None)
            self.observer.on_outbox(self.depth, self.oldest_age)

    def _settle(self, batch: list[tuple[Outgoing, asyncio.Future[None]]], exc: Exception) -> None:
        self.depth -= len(batch)
        for _, fut in batch:
            if not fut.done():
                fut.set_exception(exc)

    # -- draining --------------------------------------------------------------------------
    def start(self) -> None:
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain(), name=f"outbox {self.path.name}")

    async def close(self) -> None:
        self._closing = True
        self._kick.set()
        for task in (self._committer, self._drainer):
            if task is not None and not task.done():
                if task is self._drainer:
                    task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self._run(self.spool.close)
        self._exec.shutdown(wait=True)

    async def _drain(self) -> None:
        while not self._closing:
            if self.depth == 0:
                self._kick.clear()
                try:
                    await wait_for(self._kick.wait(), 1.0)
                except TimeoutError:
                    pass
                continue
            if not self.link.alive or self.link.blocked:
                await asyncio.sleep(RETRY_PAUSE)
                continue
            try:
                complete = await self._round()
            except (sqlite3.Error, OSError):  # the spool file itself: logged, kept, tried again
                log.exception("outbox %s: a drain round failed", self.path)
                complete = False
            if not complete:
                await asyncio.sleep(RETRY_PAUSE)

    async def _round(self) -> bool:
        items: list[Spooled] = await self._run(self.spool.oldest, BATCH)
        if not items:
            self.depth = len(self._pending)
            return True
        now = int(time.time() * 1000)
        outs = [rebase(i, now, self.delay_levels) for i in items]
        results = await asyncio.gather(*(self._send(o) for o in outs))
        done: list[int] = []
        confirmed: list[Outgoing] = []
        complete = True
        for item, out, result in zip(items, outs, results, strict=True):
            if result.ok:
                done.append(item.seq)
                confirmed.append(out)
            elif result.outcome in (Outcome.UNROUTABLE, Outcome.REFUSED):
                reason = f"{result.outcome.value}: {result.detail}"
                log.error("outbox: job %s to %r will never be taken (%s); moved to the failed "
                          "table of %s", out.message_id, out.queue, reason, self.path)
                await self._run(self.spool.fail, item, reason)
                self.failed += 1
                self.depth -= 1
            else:
                complete = False  # full, queue down, link lost: kept, tried again
        if done:
            await self._run(self.spool.delete, done)
            self.depth -= len(done)
            self.sent += len(done)
        if self.recorder is not None and confirmed:
            await self.recorder.record(*(accepted_event(o, self.source) for o in confirmed))
        self.oldest_ms = await self._run(self.spool.oldest_ms)
        self.observer.on_outbox(self.depth, self.oldest_age)
        return complete

    async def _send(self, out: Outgoing) -> PublishResult:
        props = Properties(content_type=out.content_type, delivery_mode=2, priority=out.priority,
                           message_id=out.message_id, headers=out.headers,
                           timestamp=datetime.fromtimestamp(out.timestamp, UTC))
        return await self.publisher.publish(out.body, exchange=out.exchange,
                                            routing_key=out.routing_key, properties=props,
                                            queue=out.queue, link_timeout=1.0)

"""The outbox of the blocking :class:`~queuewatch.producer.Producer` (see :mod:`.outbox` for
the async one and the guarantees). A blocking producer has no background task, and pika is
not thread-safe, so this outbox is drained by the producer's own calls: at ``connect``,
before each ``publish`` while jobs are spooled (at most one try per
:data:`RETRY_INTERVAL` while the broker is away), by ``drain(timeout)``, and at ``close``.
Each spooled publish is its own commit (one fsync with ``outbox_fsync``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from queuewatch.broker.blocking import BlockingLink
from queuewatch.broker.publish import Outcome
from queuewatch.producer._common import Outgoing, Published, published
from queuewatch.producer.observer import ProducerObserver
from queuewatch.producer.outbox import BATCH, OutboxFull, rebase
from queuewatch.producer.spool import Spool

log = logging.getLogger(__name__)

#: Least pause between two tries to drain while the broker is away (seconds).
RETRY_INTERVAL = 1.0
#: How long one drain try waits to connect (seconds).
CONNECT_WAIT = 0.5


class SyncOutbox:
    def __init__(self, path: Path, *, delay_levels: int, observer: ProducerObserver,
                 max_jobs: int, fsync: bool) -> None:
        self.path = path
        self.spool = Spool(path, fsync=fsync)
        self.delay_levels = delay_levels
        self.observer = observer
        self.max_jobs = max_jobs
        self.depth = self.spool.depth()
        self.oldest_ms = self.spool.oldest_ms()
        self.failed = self.spool.failed()
        self.sent = 0
        self._next_try = 0.0

    @property
    def oldest_age(self) -> float | None:
        if self.depth == 0 or self.oldest_ms is None:
            return None
        return max(time.time() - self.oldest_ms / 1000, 0.0)

    def put(self, out: Outgoing, drain: Callable[[float], bool], *, wait: bool,
            timeout: float) -> Published:
        deadline = time.monotonic() + timeout
        while self.depth >= self.max_jobs:
            if not wait or time.monotonic() >= deadline:
                raise OutboxFull(self.max_jobs, self.path)
            drain(min(RETRY_INTERVAL, max(deadline - time.monotonic(), 0.0)))
            if self.depth >= self.max_jobs:
                time.sleep(0.05)
        self.spool.put([out])
        self.depth += 1
        if self.oldest_ms is None:
            self.oldest_ms = int(time.time() * 1000)
        self.observer.on_outbox(self.depth, self.oldest_age)
        return replace(published(out), spooled=True)

    def due_for_try(self) -> bool:
        return time.monotonic() >= self._next_try

    def drain(self, link: BlockingLink, deadline: float,
              on_confirmed: Callable[[list[Outgoing]], None]) -> bool:
        """Send spooled jobs, oldest first, until empty (True) or ``deadline``/a failure."""
        while self.depth and time.monotonic() < deadline:
            items = self.spool.oldest(BATCH)
            if not items:
                self.depth = 0
                break
            now = int(time.time() * 1000)
            done: list[int] = []
            confirmed: list[Outgoing] = []
            stop = False
            for item in items:
                out = rebase(item, now, self.delay_levels)
                result = link.publish(
                    out.body, exchange=out.exchange, routing_key=out.routing_key,
                    deadline=min(deadline, time.monotonic() + CONNECT_WAIT),
                    content_type=out.content_type, message_id=out.message_id,
                    timestamp=out.timestamp, headers=out.headers, priority=out.priority)
                if result.ok:
                    done.append(item.seq)
                    confirmed.append(out)
                elif result.outcome in (Outcome.UNROUTABLE, Outcome.REFUSED):
                    reason = f"{result.outcome.value}: {result.detail}"
                    log.error("outbox: job %s to %r will never be taken (%s); moved to the "
                              "failed table of %s", out.message_id, out.queue, reason, self.path)
                    self.spool.fail(item, reason)
                    self.failed += 1
                    self.depth -= 1
                else:
                    stop = True
                    break
            if done:
                self.spool.delete(done)
                self.depth -= len(done)
                self.sent += len(done)
                on_confirmed(confirmed)
            self.oldest_ms = self.spool.oldest_ms()
            self.observer.on_outbox(self.depth, self.oldest_age)
            if stop:
                self._next_try = time.monotonic() + RETRY_INTERVAL
                return False
        return self.depth == 0

    def close(self) -> None:
        self.spool.close()

"""Import an export file (:mod:`queuewatch.dlq.exportfile`) into a queue, loss-free.

An import publishes with confirms, up to :data:`IMPORT_WINDOW` lines in flight. A line that
cannot be published (not an export line; a name or value AMQP cannot carry) is reported
with its reason and the import goes on. What RabbitMQ confirmed is recorded
(:mod:`queuewatch.dlq.importlog`), so running the same import again adds nothing twice and
retries only what is not in the queue.

A cut or silent link, a restarted broker or a target deleted under it ends it within
bounded time with :class:`ImportStopped`, whose :class:`ImportResult` says which lines are
in the queue for sure (the first ``resume_at`` lines), which are in doubt (published without
a confirm: a re-run may duplicate them, never lose them) and which were not sent.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from queuewatch.broker.errors import is_link_error, raise_if_cancelled
from queuewatch.broker.publish import Outcome, classify_failure
from queuewatch.broker.wire import Connection
from queuewatch.dlq.channel import publish, queue_depth, raw_channel, still_there
from queuewatch.dlq.exportfile import count_lines, read_export
from queuewatch.dlq.importlog import ImportLog
from queuewatch.dlq.peek import ProgressFn
from queuewatch.dlq.watch import (
    CLOSE_TIMEOUT,
    STALL_TIMEOUT,
    Interrupted,
    Watch,
    describe,
)
from queuewatch.errors import NotFound

IMPORT_WINDOW = 500
SETTLE_STALL = 10.0
"""After the import stopped on a live link: longest wait without a confirm for the rest."""


@dataclass(frozen=True)
class LineRefused:
    """A message of the export file that was not imported, and why."""

    line: int
    why: str


@dataclass(frozen=True)
class ImportResult:
    """How an import ended: which lines (messages, 1-based, blank lines not counted) are
    in the queue."""

    queue: str
    path: str
    total: int
    """Messages in the file."""
    skipped: int = 0
    """Leading messages not published (``skip``: a resumed import)."""
    confirmed: int = 0
    """Published and confirmed by RabbitMQ by this run: in the queue."""
    resume_at: int = 0
    """Every message up to this one (counting the skipped) is confirmed: resume with
    ``skip=resume_at``."""
    in_doubt: int = 0
    """Published without a confirm when it stopped: may or may not be in the queue."""
    refused: int = 0
    """Came back unroutable or nacked: not in the queue."""
    elapsed: float = 0.0
    error: str | None = None
    """Why the import stopped early (None: it went through the whole file)."""
    unpublishable: tuple[LineRefused, ...] = ()
    """Lines that cannot be published (not an export line, a value AMQP cannot carry): not
    in the queue; the import went on past them."""
    earlier: int = 0
    """Lines an earlier import of this file into this queue had put there: not published
    again (see :mod:`queuewatch.dlq.importlog`)."""

    @property
    def not_sent(self) -> int:
        return max(self.total - self.skipped - self.earlier - self.confirmed - self.in_doubt
                   - self.refused - len(self.unpublishable), 0)

    @property
    def outcome(self) -> Literal["ok", "partial", "error"]:
        if self.error is not None:
            return "partial" if self.confirmed else "error"
        return "partial" if self.unpublishable else "ok"

    def report(self) -> str:
        """What moved, what stayed and why (several lines)."""
        if self.error is None:
            lines = [f"imported {self.confirmed} of {self.total} messages from {self.path} "
                     f"into {self.queue!r}"]
        else:
            lines = [f"import of {self.path} into {self.queue!r} stopped: {self.error}",
                     f"  confirmed (in the queue): {self.confirmed} of {self.total - self.skipped}"
                     + (f" (after skipping {self.skipped})" if self.skipped else "")]
        if self.earlier:
            lines.append(f"  already there: {self.earlier} (imported from this file into "
                         f"{self.queue!r} before; not published again: --again to add them)")
        if self.skipped and self.error is None:
            lines.append(f"  skipped: the first {self.skipped}")
        for r in self.unpublishable[:50]:
            lines.append(f"  not imported: message {r.line}: {r.why}")
        if len(self.unpublishable) > 50:
            lines.append(f"  ... and {len(self.unpublishable) - 50} more not imported")
        if self.error is None:
            return "\n".join(lines)
        if self.in_doubt:
            lines.append(f"  in doubt: {self.in_doubt} published without a confirm (may be in "
                         "the queue: a re-run can duplicate them, never lose them)")
        if self.refused:
            lines.append(f"  refused by RabbitMQ (not in the queue): {self.refused}")
        lines.append(f"  not sent: {self.not_sent}")
        lines.append(f"  run it again to go on (what is confirmed is not imported twice; at "
                     f"most {self.in_doubt} duplicates), or resume with --skip {self.resume_at}")
        return "\n".join(lines)


class ImportStopped(Interrupted):
    """An import ended early; ``result`` (and ``str()``) say what moved, what stayed, why."""

    def __init__(self, result: ImportResult) -> None:
        self.result = result
        super().__init__(result.report())


class _Confirms:
    """Which lines are settled (confirmed, or not to be published); the longest settled
    prefix."""

    def __init__(self, first: int, log: ImportLog | None) -> None:
        self.done: set[int] = set()
        self.prefix = first
        self.confirmed = self.refused = self.failed = self.unsent = 0
        self.unpublishable: list[LineRefused] = []
        self.log = log

    def settled(self, n: int) -> None:
        self.done.add(n)
        while self.prefix + 1 in self.done:
            self.prefix += 1
            self.done.discard(self.prefix)

    def ok(self, n: int) -> None:
        self.confirmed += 1
        if self.log is not None:
            self.log.add(n)
        self.settled(n)

    def cannot(self, n: int, why: str) -> None:
        self.unpublishable.append(LineRefused(n, why))
        self.settled(n)


async def import_(
    connection: Connection, queue: str, path: Path, progress: ProgressFn | None = None,
    skip: int = 0, stall: float = STALL_TIMEOUT, log: ImportLog | None = None,
) -> ImportResult:
    """Publish every line of ``path`` (after the first ``skip``, and but those ``log``
    says an earlier import confirmed) into ``queue`` (confirmed, mandatory).

    Raises :class:`ImportStopped` when it ends early (see the module doc): nothing is lost,
    and re-running duplicates at most what was in flight."""
    total = count_lines(path)
    await queue_depth(connection, queue)  # NotFound before anything is published
    start = time.monotonic()
    window = asyncio.Semaphore(IMPORT_WINDOW)
    state = _Confirms(skip, log)
    error: str | None = None
    watch = Watch(connection, stall=stall, probe=lambda: still_there(connection, queue))
    tasks: set[asyncio.Future[Any]] = set()
    stopping = False
    earlier = 0

    def settled(fut: asyncio.Future[Any], n: int) -> None:
        window.release()
        tasks.discard(fut)
        if fut.cancelled():
            state.failed += 1
            return
        exc = fut.exception()
        if exc is None:
            watch.progress()
            state.ok(n)
            return
        result = classify_failure(exc)
        if result.outcome is Outcome.REFUSED and not result.sent:
            watch.progress()  # the AMQP library cannot encode it: report it and go on
            state.cannot(n, result.detail)
        elif result.outcome is Outcome.LINK_LOST and not result.sent:
            state.unsent += 1  # the channel was closed before this one was written
            watch.fail(describe(exc, "import"), link_lost=True)
        elif result.outcome in (Outcome.UNROUTABLE, Outcome.NACKED):
            watch.progress()
            state.refused += 1
            what = "came back unroutable" if result.outcome is Outcome.UNROUTABLE \
                else "was refused (nack: is the queue full?)"
            if not stopping:  # once stopping, refusals of what was in flight are expected
                watch.fail(f"message {n} {what}: does {queue!r} still exist?")
        else:
            state.failed += 1
            watch.fail(describe(exc, "import"), link_lost=is_link_error(exc))

    try:
        async with raw_channel(connection, confirms=True, watch=watch) as raw:
            watch.attach(raw, "import")
            try:
                async with watch.guard():
                    for line in read_export(path):
                        n = line.number
                        if n <= skip:
                            continue
                        if log is not None and n in log:
                            earlier += 1
                            state.settled(n)
                            continue
                        if line.properties is None:
                            state.cannot(n, line.error or "unreadable")
                            continue
                        raise_if_cancelled()  # (a library under us may swallow one)
                        await window.acquire()
                        if watch.reason is not None:  # acquire() need not yield to the guard
                            raise Interrupted(watch.reason)
                        fut = publish(raw, line.body, "", queue, line.properties)
                        tasks.add(fut)
                        fut.add_done_callback(lambda f, n=n: settled(f, n))  # type: ignore[misc]
                        if progress is not None and n % 1000 == 0:
                            progress(n, total)
                    if tasks and not watch.link_lost:
                        await asyncio.wait(list(tasks))
            except Interrupted as exc:
                error = str(exc)
            except asyncio.CancelledError:
                for task in list(tasks):
                    task.cancel()
                raise
            stopping = True
            if tasks and not watch.link_lost:
                # Stopped by a refusal on a live link: the confirms in flight still come.
                try:
                    async with watch.guard(stall=SETTLE_STALL):
                        await asyncio.wait(list(tasks))
                except Interrupted:
                    pass
            for task in list(tasks):
                task.cancel()  # no confirm will come: in doubt
            if tasks:
                await asyncio.wait(list(tasks), timeout=CLOSE_TIMEOUT)
            watch.closing()
    finally:
        if log is not None:
            log.save()
    if progress is not None:
        progress(state.prefix, total)
    if error is None and (state.refused or state.failed):
        error = watch.reason or "some messages were not confirmed"
    if error is not None and ("does not exist" in error or "came back unroutable" in error):
        try:
            await queue_depth(connection, queue)
        except NotFound:
            error = f"the queue {queue!r} was deleted during the import"
        except Interrupted:
            pass
    result = ImportResult(
        queue=queue, path=str(path), total=total, skipped=min(skip, total),
        confirmed=state.confirmed, resume_at=state.prefix, in_doubt=state.failed,
        refused=state.refused, elapsed=time.monotonic() - start, error=error,
        unpublishable=tuple(sorted(state.unpublishable, key=lambda r: r.line)),
        earlier=earlier)
    if error is not None:
        raise ImportStopped(result)
    return result

"""Export a DLQ to JSON lines and import it back (bodies and headers round-trip exactly).

One line per message::

    {"position": 0, "routing_key": "jobs.dlq", "properties": {...}, "headers": {...},
     "body_b64": "...", "body_text": "..."}

``body_text`` is there for people (and ``jq``) when the body is UTF-8; import reads
``body_b64``. Header values use the tagged encoding of :mod:`queuewatch.dlq.codec`.

An import publishes with confirms, up to :data:`IMPORT_WINDOW` lines in flight. A cut or
silent link, a restarted broker or a target deleted under it ends it within bounded time
with :class:`ImportStopped`, whose :class:`ImportResult` says which lines are in the queue
for sure (the first ``resume_at`` lines: re-run with ``skip=resume_at``), which are in doubt
(published without a confirm: a re-run may duplicate them, never lose them) and which were
not sent.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from queuewatch.broker import wire
from queuewatch.broker.errors import is_link_error
from queuewatch.broker.publish import Outcome, classify_failure
from queuewatch.broker.wire import Connection
from queuewatch.dlq.channel import publish, queue_depth, raw_channel, still_there
from queuewatch.dlq.codec import decode_table, decode_value, encode_table, encode_value
from queuewatch.dlq.decode import for_publish, properties_dict
from queuewatch.dlq.peek import ProgressFn, iterate
from queuewatch.dlq.watch import (
    CLOSE_TIMEOUT,
    STALL_TIMEOUT,
    Interrupted,
    Watch,
    describe,
)
from queuewatch.errors import ConfigError, NotFound

IMPORT_WINDOW = 500
SETTLE_STALL = 10.0
"""After the import stopped on a live link: longest wait without a confirm for the rest."""
#: Headers RabbitMQ writes itself on delivery; an imported copy starts without them.
BROKER_HEADERS = ("x-delivery-count",)


def export_line(position: int, routing_key: str, props: Any, body: bytes) -> str:
    record: dict[str, Any] = {
        "position": position,
        "routing_key": routing_key,
        "properties": {k: encode_value(v) for k, v in properties_dict(props).items()},
        "headers": encode_table(props.headers or {}),
        "body_b64": base64.b64encode(body).decode(),
    }
    try:
        record["body_text"] = body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


async def export(
    connection: Connection, queue: str, out: IO[str], progress: ProgressFn | None = None,
) -> int:
    """Write every dead letter of ``queue`` to ``out``; the queue is left as it was."""
    count = 0
    async with aclosing(iterate(connection, queue, progress=progress)) as stream:
        async for dl, message in stream:
            out.write(export_line(dl.position, dl.routing_key, message.header.properties,
                                  dl.body) + "\n")
            count += 1
    out.flush()
    return count


def read_export(path: Path) -> Iterator[tuple[wire.Properties, bytes]]:
    """(properties, body) per line of an export file."""
    try:
        fh = path.open(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
    with fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                props = {k: decode_value(v) for k, v in rec.get("properties", {}).items()}
                headers = for_publish(decode_table(rec.get("headers", {})))
                for name in BROKER_HEADERS:
                    headers.pop(name, None)
                body = base64.b64decode(rec["body_b64"], validate=True)
                properties = wire.Properties(headers=headers or None, **props)
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{path}:{lineno}: not a queuewatch export line ({exc})") from exc
            yield properties, body


def count_lines(path: Path) -> int:
    try:
        with path.open(encoding="utf-8") as fh:
            return sum(1 for line in fh if line.strip())
    except OSError as exc:
        raise ConfigError(f"cannot read {str(path)!r}: {exc.strerror}") from exc


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
    """Published and confirmed by RabbitMQ: in the queue."""
    resume_at: int = 0
    """Every message up to this one (counting the skipped) is confirmed: resume with
    ``skip=resume_at``."""
    in_doubt: int = 0
    """Published without a confirm when it stopped: may or may not be in the queue."""
    refused: int = 0
    """Came back unroutable or nacked: not in the queue."""
    elapsed: float = 0.0
    error: str | None = None

    @property
    def not_sent(self) -> int:
        return max(self.total - self.skipped - self.confirmed - self.in_doubt - self.refused, 0)


    def report(self) -> str:
        """What moved, what stayed and why (several lines)."""
        lines = [f"import of {self.path} into {self.queue!r} stopped: {self.error}",
                 f"  confirmed (in the queue): {self.confirmed} of {self.total - self.skipped}"
                 + (f" (after skipping {self.skipped})" if self.skipped else "")]
        if self.in_doubt:
            lines.append(f"  in doubt: {self.in_doubt} published without a confirm (may be in "
                         "the queue: a re-run can duplicate them, never lose them)")
        if self.refused:
            lines.append(f"  refused by RabbitMQ (not in the queue): {self.refused}")
        lines.append(f"  not sent: {self.not_sent}")
        lines.append(f"  resume with --skip {self.resume_at} (every message up to there is "
                     f"confirmed; at most {self.confirmed + self.in_doubt - self.resume_at + self.skipped} "
                     "duplicates)")
        return "\n".join(lines)


class ImportStopped(Interrupted):
    """An import ended early; ``result`` (and ``str()``) say what moved, what stayed, why."""

    def __init__(self, result: ImportResult) -> None:
        self.result = result
        super().__init__(result.report())


class _Confirms:
    """Which lines are confirmed; the longest confirmed prefix."""

    def __init__(self, first: int) -> None:
        self.first = first
        self.done: set[int] = set()
        self.prefix = first
        self.confirmed = self.refused = self.failed = self.unsent = 0

    def ok(self, n: int) -> None:
        self.confirmed += 1
        self.done.add(n)
        while self.prefix + 1 in self.done:
            self.prefix += 1
            self.done.discard(self.prefix)


async def import_(
    connection: Connection, queue: str, path: Path, progress: ProgressFn | None = None,
    skip: int = 0, stall: float = STALL_TIMEOUT,
) -> int:
    """Publish every line of ``path`` (after the first ``skip``) into ``queue`` (confirmed,
    mandatory); returns how many were published.

    Raises :class:`ImportStopped` when it ends early (see the module doc): nothing is lost,
    and re-running from ``resume_at`` duplicates at most what was in flight."""
    total = count_lines(path)
    await queue_depth(connection, queue)  # NotFound before anything is published
    start = time.monotonic()
    window = asyncio.Semaphore(IMPORT_WINDOW)
    state = _Confirms(skip)
    error: str | None = None
    watch = Watch(connection, stall=stall, probe=lambda: still_there(connection, queue))
    tasks: set[asyncio.Future[Any]] = set()
    stopping = False

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
        if result.outcome is Outcome.LINK_LOST and not result.sent:
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

    async with raw_channel(connection, confirms=True, watch=watch) as raw:
        watch.attach(raw, "import")
        me = asyncio.current_task()
        try:
            async with watch.guard():
                for n, (props, body) in enumerate(read_export(path), 1):
                    if n <= skip:
                        continue
                    if me is not None and me.cancelling():
                        raise asyncio.CancelledError
                    await window.acquire()
                    if watch.reason is not None:  # acquire() need not yield to the guard
                        raise Interrupted(watch.reason)
                    fut = publish(raw, body, "", queue, props)
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
    if progress is not None:
        progress(state.prefix, total)
    if error is None and (state.refused or state.failed):
        error = watch.reason or "some messages were not confirmed"
    if error is None:
        return state.confirmed
    if "does not exist" in error or "came back unroutable" in error:
        try:
            await queue_depth(connection, queue)
        except NotFound:
            error = f"the queue {queue!r} was deleted during the import"
        except Interrupted:
            pass
    raise ImportStopped(ImportResult(
        queue=queue, path=str(path), total=total, skipped=min(skip, total),
        confirmed=state.confirmed, resume_at=state.prefix, in_doubt=state.failed,
        refused=state.refused, elapsed=time.monotonic() - start, error=error))

"""The live event stream over HTTP: Server-Sent Events, resumable with ``Last-Event-ID``.

Each job event is sent as::

    id: <stream offset>-<index>
    event: <kind>                  (accepted, started, attempt_failed, succeeded, ...)
    data: <the event as JSON>

The id is the event's position in the job events stream (as the local index numbers it), so
a client that reconnects with ``Last-Event-ID`` (browsers' EventSource do this by
themselves) first gets every event after that position from the index, then the live ones —
no gap.

A job's ``accepted`` is recorded by its producer after the broker's confirm, so a fast worker's
``started`` (even ``succeeded``) can precede it in the stream. Each job's events are sent in
their real order: an event of a job whose accepted has not been seen yet waits (at most
``HOLD`` seconds; a job from a foreign producer has none) and the accepted is sent before
it. Such a moved event carries no ``id`` (the client's last id stays where everything before
it was sent), so a reconnect at that moment may repeat a few events — never skip one; each
event's ``data.id`` is unique for de-duplication. A comment line every ``keepalive`` seconds keeps proxies from closing an
idle stream. One :class:`EventHub` listens to the stream for all clients: positions are
looked up once per event, not once per client. A client too slow to keep up (more than
``max_queued`` events waiting) is disconnected; it resumes from its last id.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator

from queuewatch.events import model as ev
from queuewatch.events.model import Event
from queuewatch.jobs.api import Jobs
from queuewatch.jobs.httpd import head_bytes

Position = tuple[int, int]
Item = tuple[Position, Event]

#: Seconds between keep-alive comments on an idle stream.
KEEPALIVE = 15.0
#: Events waiting for one client before it is disconnected (it resumes from its last id).
MAX_QUEUED = 20_000
#: Events read from the index per query while catching up.
PAGE = 1000
#: Milliseconds a browser waits before reconnecting (the SSE ``retry`` field).
RECONNECT_MS = 1000
#: Seconds an event waits for its job's accepted event to arrive before it is sent anyway.
HOLD = 1.0
_FIRST_KINDS = frozenset({ev.ACCEPTED, ev.SCHEDULED})


def format_id(position: Position) -> str:
    return f"{position[0]}-{position[1]}"


def parse_id(text: str) -> Position:
    """``"<offset>-<index>"`` -> (offset, index); ValueError for anything else."""
    off, dash, idx = text.strip().partition("-")
    if not dash or not off.isdigit() or not idx.isdigit() or len(text) > 40:
        raise ValueError(f"not an event id: {text[:50]!r} (expected <offset>-<index>)")
    return int(off), int(idx)


def format_event(position: Position | None, event: Event) -> bytes:
    data = json.dumps(event.to_json(), separators=(",", ":"), default=str)
    head = f"id: {format_id(position)}\n" if position is not None else ""
    return f"{head}event: {event.kind}\ndata: {data}\n\n".encode()


class Reorder:
    """One client's events in each job's real order (see the module docstring): ``feed``
    items in stream order, ``release`` what may be sent now as (id or None, event)."""

    def __init__(self, index_has_first: Callable[[str, Position], bool],
                 hold: float = HOLD) -> None:
        self.has_first = index_has_first
        self.hold = hold
        self.buffer: list[tuple[Position, Event, bool]] = []
        self.waiting: set[str] = set()
        self.seen: set[str] = set()
        self.since = 0.0

    def feed(self, items: list[Item]) -> None:
        for pos, e in items:
            job = e.job_id
            if e.kind in _FIRST_KINDS:
                self._note_seen(job)
                if job in self.waiting:
                    self.waiting.discard(job)
                    at = next(i for i, (_, x, _) in enumerate(self.buffer) if x.job_id == job)
                    self.buffer.insert(at, (pos, e, True))
                    continue
            elif job not in self.seen and job not in self.waiting:
                if self.has_first(job, pos):
                    self._note_seen(job)
                else:
                    if not self.waiting:
                        self.since = time.monotonic()
                    self.waiting.add(job)
            self.buffer.append((pos, e, False))

    def _note_seen(self, job: str) -> None:
        if len(self.seen) > 100_000:
            self.seen.clear()
        self.seen.add(job)

    def due_in(self) -> float | None:
        """Seconds until held events go out anyway (None: nothing held)."""
        if not self.waiting:
            return None
        return max(self.since + self.hold - time.monotonic(), 0.0)

    def release(self) -> list[tuple[Position | None, Event]]:
        if self.waiting and time.monotonic() - self.since < self.hold:
            return []
        for job in self.waiting:  # gave up waiting: a job without an accepted event
            self._note_seen(job)
        self.waiting.clear()
        out: list[tuple[Position | None, Event]] = []
        ahead: Position | None = None
        for pos, e, moved in self.buffer:
            if moved:
                ahead = pos if ahead is None or pos > ahead else ahead
                out.append((None, e))
            else:
                out.append((pos if ahead is None or pos > ahead else None, e))
        if out and ahead is not None:  # everything up to the moved events' is sent now
            top = max(ahead, max(p for p, _, _ in self.buffer))
            out[-1] = (top, out[-1][1])
        self.buffer = []
        return out


class Subscriber:
    """One client's inbox of live events matching its filter."""

    def __init__(self, job_id: str | None, queue: str | None, max_queued: int) -> None:
        self.job_id = job_id
        self.queue = queue
        self.max_queued = max_queued
        self.inbox: asyncio.Queue[list[Item]] = asyncio.Queue()
        self.waiting = 0
        self.overflowed = asyncio.Event()

    def matches(self, e: Event) -> bool:
        return ((self.job_id is None or e.job_id == self.job_id)
                and (self.queue is None or e.queue == self.queue))

    def offer(self, items: list[Item]) -> None:
        mine = [item for item in items if self.matches(item[1])]
        if not mine or self.overflowed.is_set():
            return
        if self.waiting + len(mine) > self.max_queued:
            self.overflowed.set()
            return
        self.waiting += len(mine)
        self.inbox.put_nowait(mine)


class EventHub:
    """Fans the events the tail applies out to SSE clients (one listener for all)."""

    def __init__(self, jobs: Jobs, *, max_queued: int = MAX_QUEUED) -> None:
        self.jobs = jobs
        self.index = jobs.index
        self.max_queued = max_queued
        self.subscribers: set[Subscriber] = set()
        jobs.tail.listeners.append(self._on_events)

    def close(self) -> None:
        if self._on_events in self.jobs.tail.listeners:
            self.jobs.tail.listeners.remove(self._on_events)

    def _on_events(self, events: list[Event]) -> None:
        if not self.subscribers:
            return
        items: list[Item] = []
        for e in events:
            pos = self.index.position_of(e.event_id)
            if pos is not None:
                items.append((pos, e))
        for sub in list(self.subscribers):
            sub.offer(items)

    def backlog(self, after: Position | None, sub: Subscriber) -> Iterator[Item]:
        """Events after ``after`` in the index that match ``sub``, in stream order."""
        off, idx = after if after is not None else (-1, -1)
        while True:
            sql = ("SELECT body, off, idx FROM events WHERE (off > ? OR (off = ? AND idx > ?))")
            args: list[object] = [off, off, idx]
            if sub.job_id is not None:
                sql += " AND job = ?"
                args.append(sub.job_id)
            if sub.queue is not None:
                sql += " AND queue = ?"
                args.append(sub.queue)
            rows = self.index.db.execute(sql + " ORDER BY off, idx LIMIT ?", [*args, PAGE]).fetchall()
            for body, off, idx in rows:
                yield (int(off), int(idx)), Event.from_json(json.loads(body), int(off))
            if len(rows) < PAGE:
                return

    async def stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                     job_id: str | None, queue: str | None, after: Position | None,
                     keepalive: float = KEEPALIVE) -> None:
        """Answer one ``GET /events`` until the client goes (or falls too far behind)."""
        sub = Subscriber(job_id, queue, self.max_queued)
        self.subscribers.add(sub)  # before reading the backlog: nothing falls in between
        try:
            writer.write(head_bytes(200, {
                "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store",
                "Connection": "close", "X-Accel-Buffering": "no"}))
            writer.write(f"retry: {RECONNECT_MS}\n\n".encode())
            pump = asyncio.ensure_future(self._pump(writer, sub, after, keepalive))
            gone = asyncio.ensure_future(_until_eof(reader))
            slow = asyncio.ensure_future(sub.overflowed.wait())
            done, pending = await asyncio.wait({pump, gone, slow},
                                               return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if pump in done:
                pump.result()
        finally:
            self.subscribers.discard(sub)

    def has_first(self, job_id: str, before: Position) -> bool:
        """Does the index hold the job's accepted (or scheduled) event before ``before``?"""
        rows = self.index.db.execute("SELECT body, off, idx FROM events WHERE job = ?",
                                     (job_id,)).fetchall()
        for body, off, idx in rows:
            if (int(off), int(idx)) < before and json.loads(body).get("kind") in _FIRST_KINDS:
                return True
        return False

    async def _pump(self, writer: asyncio.StreamWriter, sub: Subscriber,
                    after: Position | None, keepalive: float) -> None:
        order = Reorder(self.has_first)
        last = after
        page: list[Item] = []
        for item in self.backlog(after, sub):
            page.append(item)
            last = item[0]
            if len(page) >= 200:
                await self._send(writer, order, page)
                page = []
        await self._send(writer, order, page)
        idle = 0.0
        while True:
            due = order.due_in()
            wait = keepalive - idle if due is None else min(due, keepalive - idle)
            started = time.monotonic()
            try:
                items = await asyncio.wait_for(sub.inbox.get(), max(wait, 0.0))
            except TimeoutError:
                idle += time.monotonic() - started
                if idle >= keepalive:
                    writer.write(b": keep-alive\n\n")
                    idle = 0.0
                await self._send(writer, order, [])
                continue
            sub.waiting -= len(items)
            fresh = [(pos, e) for pos, e in items if last is None or pos > last]
            if fresh:  # (the others were in the backlog already)
                last = fresh[-1][0]
                idle = 0.0
            await self._send(writer, order, fresh)

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, order: Reorder, items: list[Item]) -> None:
        order.feed(items)
        out = order.release()
        if out:
            writer.write(b"".join(format_event(pos, e) for pos, e in out))
        await writer.drain()


async def _until_eof(reader: asyncio.StreamReader) -> None:
    """Return when the client closed its side (an SSE client sends nothing after its request)."""
    try:
        while await reader.read(4096):
            pass
    except (ConnectionError, OSError):
        return

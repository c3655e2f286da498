"""The live event stream over HTTP: Server-Sent Events, resumable with ``Last-Event-ID``.

Each job event is sent as::

    id: <stream offset>-<index>-<event id>
    event: <kind>                  (accepted, started, attempt_failed, succeeded, ...)
    data: <the event as JSON>

The id is the event's position in the job events stream (``<offset>-<index>-<event id>``), so
a client that reconnects with ``Last-Event-ID`` (browsers' EventSource do this by
themselves) first gets every event after that position from the index, then the live ones —
no gap, also when it reconnects to another host (see :meth:`EventHub.resume_after`).

Each job's events go out in their real order (accepted before started, even when the
stream holds them the other way round: see :mod:`.reorder`). A comment line every
``keepalive`` seconds keeps proxies from closing an idle stream. One :class:`EventHub`
listens to the stream for all clients: positions are looked up and events encoded once per
event, not once per client. A client too slow to keep up (more than ``max_queued`` events
waiting) is disconnected; it resumes from its last id.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from typing import Any

from queuewatch.aio import wait_for
from queuewatch.events.model import Event
from queuewatch.jobs.api import Jobs
from queuewatch.jobs.httpd import head_bytes
from queuewatch.jobs.reorder import FIRST_KINDS, Item, Position, Reorder
from queuewatch.jobs.state import public_event_json

#: Seconds between keep-alive comments on an idle stream.
KEEPALIVE = 15.0
#: Events waiting for one client before it is disconnected (it resumes from its last id).
MAX_QUEUED = 20_000
#: Events read from the index per query while catching up.
PAGE = 1000
#: Milliseconds a browser waits before reconnecting (the SSE ``retry`` field).
RECONNECT_MS = 1000
_EVENT_ID = re.compile(r"^[A-Za-z0-9_.:]{1,64}$")
#: The largest offset or index an event id may name: SQLite's largest integer (the index
#: keeps positions there; a larger one made the resume query raise, a 500 after the 200).
MAX_POSITION = 2**63 - 1
#: Entries kept in the hub's caches (encoded events, jobs' first positions) before a reset.
CACHE_MAX = 100_000
#: The response head of ``GET /events`` (and of ``HEAD /events``).
EVENT_STREAM_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8",
                        "Cache-Control": "no-store", "Connection": "close",
                        "X-Accel-Buffering": "no"}


def format_id(position: Position, event_id: str) -> str:
    """``<offset>-<index>-<event id>``: the index numbers events within this host's index, so
    the event id lets another host (its index numbered its own way) find the same place."""
    if _EVENT_ID.match(event_id):
        return f"{position[0]}-{position[1]}-{event_id}"
    return f"{position[0]}-{position[1]}"


def parse_id(text: str) -> tuple[Position, str | None]:
    """``"<offset>-<index>[-<event id>]"`` -> ((offset, index), event id or None);
    ValueError for anything else."""
    off, _, rest = text.strip().partition("-")
    idx, _, eid = rest.partition("-")
    if (not off.isascii() or not idx.isascii() or not off.isdigit() or not idx.isdigit()
            or len(off) > 20 or len(idx) > 20 or (eid and not _EVENT_ID.match(eid))
            or int(off) > MAX_POSITION or int(idx) > MAX_POSITION):
        raise ValueError(f"not an event id: {text[:50]!r} (expected <offset>-<index>-<event id>)")
    return (int(off), int(idx)), eid or None


def format_event(id_item: Item | None, event: Event, body: bytes | None = None) -> bytes:
    """One SSE event; ``body``: its ``event:`` and ``data:`` lines, encoded before."""
    if body is None:
        body = encode_body(event)
    if id_item is None:
        return body
    return f"id: {format_id(id_item[0], id_item[1].event_id)}\n".encode() + body


def encode_body(event: Event) -> bytes:
    data = json.dumps(public_event_json(event), separators=(",", ":"), default=str)
    return f"event: {event.kind}\ndata: {data}\n\n".encode()


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
        if self.job_id is None and self.queue is None:
            mine = items
        elif self.job_id is not None:
            mine = [item for item in items if item[1].job_id == self.job_id and self.matches(item[1])]
        else:
            mine = [item for item in items if item[1].queue == self.queue]
        if not mine or self.overflowed.is_set():
            return
        if self.waiting and self.waiting + len(mine) > self.max_queued:
            self.overflowed.set()  # behind by more than max_queued (one big batch is fine)
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
        self._bodies: dict[str, bytes] = {}
        """Event id -> its encoded lines: each event is encoded once, not once per client."""
        self._framed: dict[str, bytes] = {}
        """Event id -> its id line (its own position) and encoded lines."""
        self._top: Position | None = None
        """The highest position handed to clients."""
        self._first: dict[str, Position] = {}
        """Job -> the position of its accepted/scheduled event, as far as seen."""
        jobs.tail.listeners.append(self._on_events)

    def close(self) -> None:
        if self._on_events in self.jobs.tail.listeners:
            self.jobs.tail.listeners.remove(self._on_events)

    def _on_events(self, events: list[Event]) -> None:
        if not self.subscribers:
            return
        items: list[Item] = []
        if len(self._bodies) > CACHE_MAX:
            self._bodies.clear()
            self._framed.clear()
        if len(self._first) > CACHE_MAX:
            self._first.clear()
        positions = self._positions([e.event_id for e in events])
        for e in events:
            pos = positions.get(e.event_id)
            if pos is not None and (self._top is None or pos > self._top):
                # (an event seen before, re-sent in a batch whose confirm was lost, keeps its
                # first position: it is not news; so items always go in increasing position)
                self._top = pos
                items.append((pos, e))
                body = self._bodies[e.event_id] = encode_body(e)
                self._framed[e.event_id] = f"id: {format_id(pos, e.event_id)}\n".encode() + body
                if e.kind in FIRST_KINDS and e.job_id not in self._first:
                    self._first[e.job_id] = pos
        for sub in list(self.subscribers):
            sub.offer(items)

    def resume_after(self, last_event_id: tuple[Position, str | None]) -> Position:
        """Where a client that last saw ``last_event_id`` resumes: after that event as this
        host's index places it; an event this index does not hold: from the start of its
        stream message (a few repeats, no gap)."""
        position, event_id = last_event_id
        if event_id is None:
            return position
        here = self.index.position_of(event_id)
        return here if here is not None else (position[0], -1)

    def _positions(self, event_ids: list[str]) -> dict[str, Position]:
        """Stream positions of events in the index, a few queries for a whole batch."""
        out: dict[str, Position] = {}
        for i in range(0, len(event_ids), 500):
            chunk = event_ids[i:i + 500]
            rows = self.index.db.execute(
                f"SELECT eid, off, idx FROM events WHERE eid IN ({','.join('?' * len(chunk))})",
                chunk).fetchall()
            out.update((str(eid), (int(off), int(idx))) for eid, off, idx in rows)
        return out

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
        if not self.subscribers:  # the hub did not follow positions while nobody listened
            row = self.index.db.execute(
                "SELECT off, idx FROM events ORDER BY off DESC, idx DESC LIMIT 1").fetchone()
            if row is not None and (self._top is None or (int(row[0]), int(row[1])) > self._top):
                self._top = (int(row[0]), int(row[1]))
        self.subscribers.add(sub)  # before reading the backlog: nothing falls in between
        tasks: list[asyncio.Future[Any]] = []
        try:
            writer.write(head_bytes(200, EVENT_STREAM_HEADERS))
            writer.write(f"retry: {RECONNECT_MS}\n\n".encode())
            pump = asyncio.ensure_future(self._pump(writer, sub, after, keepalive))
            tasks = [pump, asyncio.ensure_future(_until_eof(reader)),
                     asyncio.ensure_future(sub.overflowed.wait())]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if pump in done:
                pump.result()
        finally:
            # (also when this request is cancelled: the server closing with clients connected)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.subscribers.discard(sub)

    def has_first(self, job_id: str, before: Position) -> bool:
        """Does the index hold the job's accepted (or scheduled) event before ``before``?"""
        known = self._first.get(job_id)
        if known is not None:
            return known < before
        rows = self.index.db.execute("SELECT body, off, idx FROM events WHERE job = ?",
                                     (job_id,)).fetchall()
        firsts = [(int(off), int(idx)) for body, off, idx in rows
                  if json.loads(body).get("kind") in FIRST_KINDS]
        if firsts:
            self._first[job_id] = min(firsts)
        return bool(firsts) and min(firsts) < before

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
                items = await wait_for(sub.inbox.get(), max(wait, 0.0))
            except TimeoutError:
                idle += time.monotonic() - started
                if idle >= keepalive:
                    writer.write(b": keep-alive\n\n")
                    idle = 0.0
                await self._send(writer, order, [])
                continue
            sub.waiting -= len(items)
            if last is None or items[0][0] > last:  # (items come in stream order)
                fresh = items
            else:
                fresh = [(pos, e) for pos, e in items if pos > last]
            if fresh:  # (the others were in the backlog already)
                last = fresh[-1][0]
                idle = 0.0
            await self._send(writer, order, fresh)

    async def _send(self, writer: asyncio.StreamWriter, order: Reorder, items: list[Item]) -> None:
        if items and order.in_order(items):  # the common case: straight through, own ids
            framed = self._framed
            writer.write(b"".join(framed.get(e.event_id) or format_event(item, e)
                                  for item in items for e in (item[1],)))
            await writer.drain()
            return
        order.feed(items)
        out = order.release()
        if out:
            framed, bodies = self._framed, self._bodies
            writer.write(b"".join(
                framed.get(e.event_id) or format_event(item, e)
                if item is not None and item[1] is e
                else format_event(item, e, bodies.get(e.event_id)) for item, e, _ in out))
        await writer.drain()


async def _until_eof(reader: asyncio.StreamReader) -> None:
    """Return when the client closed its side (an SSE client sends nothing after its request)."""
    try:
        while await reader.read(4096):
            pass
    except (ConnectionError, OSError):
        return

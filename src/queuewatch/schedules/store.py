"""The schedules' durable state on the broker: two small streams every scheduler reads from
their start (:class:`~queuewatch.events.catchup.CatchUpReader`), then live.

- ``queuewatch.schedules``: definitions and run-time changes (tiny: one record per change;
  kept by size only, never by age, so a definition is never dropped);
- ``queuewatch.schedules.fired``: the ledger, one record per tick (the copy of the tick's job
  itself, see :mod:`.firing`), kept
  :data:`LEDGER_MAX_AGE` (older runs are still known to the job events, see the scheduler).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from queuewatch import envelope
from queuewatch.broker.link import BrokerLink
from queuewatch.broker.publish import ConfirmedPublisher, Properties
from queuewatch.broker.types import IncomingMessage
from queuewatch.errors import BrokerUnavailable, NotFound, PublishError
from queuewatch.events.catchup import CatchUpReader
from queuewatch.events.model import stream_arguments
from queuewatch.schedules.book import (
    PAUSE,
    PUT,
    REMOVE,
    RESUME,
    Entry,
    ScheduleBook,
    encode,
)
from queuewatch.schedules.spec import Schedule

DEFINITIONS_STREAM = "queuewatch.schedules"
LEDGER_STREAM = "queuewatch.schedules.fired"
#: Seconds of ledger kept.
LEDGER_MAX_AGE = 86_400.0
#: Bytes of definitions kept (about a million changes).
DEFINITIONS_MAX_BYTES = 500_000_000
#: How long a change waits for the broker (seconds).
WRITE_TIMEOUT = 30.0


def definitions_arguments() -> dict[str, Any]:
    return {"x-queue-type": "stream", "x-max-length-bytes": DEFINITIONS_MAX_BYTES,
            "x-stream-max-segment-size-bytes": 1_000_000}


def now_ms() -> int:
    return int(time.time() * 1000)


class ScheduleStore:
    """Reads both streams into :attr:`book`; writes changes and ledger records."""

    def __init__(self, link: BrokerLink, *, by: str = "api") -> None:
        self.link = link
        self.by = by
        self.book = ScheduleBook()
        self.definitions = CatchUpReader(link, DEFINITIONS_STREAM, definitions_arguments(),
                                         self.book.apply_body, what="schedule definitions")
        self.ledger = CatchUpReader(link, LEDGER_STREAM, stream_arguments(LEDGER_MAX_AGE, 200_000_000),
                                    self.book.apply_body, what="schedule ledger",
                                    on_message=self._ledger_message)
        self._publisher = ConfirmedPublisher(link)

    def _ledger_message(self, message: IncomingMessage) -> None:
        headers = dict(message.headers or {})
        at = headers.get(envelope.H_PUBLISHED_MS)
        ts = message.timestamp
        if not isinstance(at, int):
            at = int(ts.timestamp() * 1000) if isinstance(ts, datetime) else None
        self.book.apply_message(message.body, headers, at)

    async def start(self, timeout: float = 10.0) -> bool:
        """Read both streams up to now; False when one could not be read in time."""
        self.definitions.subscribe()
        self.ledger.subscribe()
        ok = await self.definitions.catch_up(timeout)
        return await self.ledger.catch_up(timeout) and ok

    async def close(self) -> None:
        await self._publisher.close()

    async def _write(self, stream: str, record: dict[str, Any]) -> None:
        record.setdefault("at", now_ms())
        record.setdefault("by", self.by)
        result = await self._publisher.publish(
            encode(record), exchange="", routing_key=stream, queue=stream,
            properties=Properties(content_type="application/json", delivery_mode=2),
            link_timeout=WRITE_TIMEOUT)
        if not result.ok:
            if result.outcome.value == "link_lost":
                raise BrokerUnavailable(f"schedule change not confirmed: {result.detail}")
            raise PublishError(f"schedule change not written: {result.outcome.value} {result.detail}")

    async def ledger_write(self, record: dict[str, Any]) -> None:
        await self._write(LEDGER_STREAM, record)

    # -- changes (the API; the CLI calls these) -------------------------------------------
    async def put(self, schedule: Schedule, origin: str = "api") -> None:
        """Add a schedule, or change one (its pause state and history stay)."""
        await self._write(DEFINITIONS_STREAM, {"op": PUT, "schedule": schedule.definition(),
                                               "origin": origin})

    async def _named(self, op: str, name: str) -> Entry:
        entry = self.book.entries.get(name)
        if entry is None:
            known = ", ".join(sorted(self.book.entries)) or "none"
            raise NotFound(f"no schedule named {name!r} (known: {known})")
        await self._write(DEFINITIONS_STREAM, {"op": op, "name": name})
        return entry

    async def pause(self, name: str) -> Entry:
        return await self._named(PAUSE, name)

    async def resume(self, name: str) -> Entry:
        return await self._named(RESUME, name)

    async def remove(self, name: str) -> Entry:
        return await self._named(REMOVE, name)

    async def sync_file(self, declared: list[Schedule]) -> list[Schedule]:
        """Write the topology file's schedules that are new or changed in the file."""
        changed = self.book.file_changes(declared)
        for s in changed:
            await self.put(s, origin="file")
        return changed

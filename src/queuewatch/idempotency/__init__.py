"""Idempotency stores: remember which jobs completed, so a redelivery is skipped.

A worker records a job's key (:func:`queuewatch.envelope.idempotency_key_of`) right after
the handler succeeded and before it acks; a job whose key is already recorded is acked and
skipped (counted as a duplicate). Two stores implement :class:`IdempotencyStore`:

* :class:`SqliteStore` — the embedded default, one file per worker host;
* :class:`RedisStore` — shared by many hosts (``pip install queuewatch[redis]``).

Both also keep each key's *outcome* (:class:`OutcomeStore`): the worker's ``succeeded``
event line, stored with the key and dropped once the event stream confirmed it. A worker
records the key and the event at once (the ack waits for the slower, not the sum), so a
process that dies between the two leaves a key without its event; the redelivery, skipped as
a duplicate, records the stored line again (same event id: readers drop the copy), so the
job's status does not stay "running".
"""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable

from queuewatch.idempotency.common import DEFAULT_TTL
from queuewatch.idempotency.redis_store import RedisStore
from queuewatch.idempotency.sqlite_store import (
    CONFIRMED_DELAY,
    DEFAULT_FILE,
    GROUP_COMMIT_DELAY,
    GROUP_COMMIT_MAX,
    OUTCOME_WAIT,
    SqliteStore,
)

__all__ = [
    "CONFIRMED_DELAY", "DEFAULT_FILE", "DEFAULT_TTL", "GROUP_COMMIT_DELAY", "GROUP_COMMIT_MAX",
    "OUTCOME_WAIT", "IdempotencyStore", "OutcomeStore", "RedisStore", "SqliteStore",
]


@runtime_checkable
class IdempotencyStore(Protocol):
    """Completed-job keys. Implementations must be safe to call from one event loop."""

    async def is_completed(self, key: str) -> bool:
        """True when a job with ``key`` already completed."""
        ...

    async def mark_completed(self, key: str) -> None:
        """Record that the job with ``key`` completed (idempotent)."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class OutcomeStore(IdempotencyStore, Protocol):
    """A store that also keeps each key's outcome until it is on record elsewhere."""

    async def mark_completed(self, key: str, outcome: str | None = None,
                             recorded: asyncio.Future[bool] | None = None) -> None:
        """Record ``key`` with ``outcome`` (an event line, or None). ``recorded``: the future
        of the outcome's own record (True once it is on record); the store follows it and
        forgets the outcome then, so the caller does not call :meth:`confirmed` for it."""
        ...

    async def completed_outcome(self, key: str) -> tuple[bool, str | None]:
        """Whether ``key`` completed, and its outcome if not yet confirmed on record."""
        ...

    def confirmed(self, key: str) -> None:
        """``key``'s outcome is on record: forget it (may be deferred and batched)."""
        ...

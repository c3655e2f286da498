"""Idempotency stores: remember which jobs completed, so a redelivery is skipped.

A worker records a job's key (:func:`queuewatch.envelope.idempotency_key_of`) right after
the handler succeeded and before it acks; a job whose key is already recorded is acked and
skipped (counted as a duplicate). Two stores implement :class:`IdempotencyStore`:

* :class:`SqliteStore` — the embedded default, one file per worker host;
* :class:`RedisStore` — shared by many hosts (``pip install queuewatch[redis]``).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from queuewatch.config import Settings
from queuewatch.errors import ConfigError

#: Forget completed keys after this long (seconds); redeliveries come much sooner.
DEFAULT_TTL = 7 * 24 * 3600.0
DEFAULT_FILE = "idempotency.sqlite3"


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


class SqliteStore:
    """Completed keys in a local SQLite file (WAL; safe for several processes on one host).

    Calls do not suspend: a lookup or insert is a local file operation of a few microseconds,
    so no other task runs between a handler's side effect and the record of its completion.
    """

    def __init__(self, path: str | Path, ttl: float = DEFAULT_TTL) -> None:
        self.path = Path(path)
        self.ttl = ttl
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS completed (key TEXT PRIMARY KEY, at REAL NOT NULL)"
        )
        self._db.execute("DELETE FROM completed WHERE at < ?", (time.time() - ttl,))

    @classmethod
    def default(cls, settings: Settings) -> SqliteStore:
        """The per-host store under ``settings.state_dir``."""
        return cls(settings.state_dir / DEFAULT_FILE)

    async def is_completed(self, key: str) -> bool:
        row = self._db.execute("SELECT 1 FROM completed WHERE key = ?", (key,)).fetchone()
        return row is not None

    async def mark_completed(self, key: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO completed (key, at) VALUES (?, ?)", (key, time.time())
        )

    @contextlib.contextmanager
    def completing(self, key: str) -> Iterator[sqlite3.Connection]:
        """Record ``key`` in the same transaction as the caller's own writes to this database.

        A side effect written through the yielded connection and the completion record commit
        together, so a crash can never leave one without the other (exactly-once effects for
        effects that live in this file)::

            with store.completing(job.idempotency_key) as db:
                db.execute("INSERT INTO invoices ...")
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            self._db.execute(
                "INSERT OR REPLACE INTO completed (key, at) VALUES (?, ?)", (key, time.time())
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM completed").fetchone()[0])

    async def close(self) -> None:
        self._db.close()


class RedisStore:
    """Completed keys in Redis (``SET key 1 EX ttl``), shared by workers on many hosts."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "queuewatch:done:",
                 ttl: float = DEFAULT_TTL, client: Any = None) -> None:
        if client is None:
            try:
                import redis.asyncio as aioredis
            except ImportError as exc:
                raise ConfigError(
                    "the Redis idempotency store needs the redis package: "
                    "pip install 'queuewatch[redis]'"
                ) from exc
            client = aioredis.from_url(url)
        self._redis = client
        self.prefix = prefix
        self.ttl = int(ttl)

    async def is_completed(self, key: str) -> bool:
        return bool(await self._redis.exists(self.prefix + key))

    async def mark_completed(self, key: str) -> None:
        await self._redis.set(self.prefix + key, b"1", ex=self.ttl)

    async def close(self) -> None:
        await self._redis.aclose()

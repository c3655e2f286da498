"""Idempotency stores: remember which jobs completed, so a redelivery is skipped.

A worker records a job's key (:func:`queuewatch.envelope.idempotency_key_of`) right after
the handler succeeded and before it acks; a job whose key is already recorded is acked and
skipped (counted as a duplicate). Two stores implement :class:`IdempotencyStore`:

* :class:`SqliteStore` — the embedded default, one file per worker host;
* :class:`RedisStore` — shared by many hosts (``pip install queuewatch[redis]``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
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
#: Records wait at most this long (seconds) to share one transaction with others.
GROUP_COMMIT_DELAY = 0.002
GROUP_COMMIT_MAX = 256
_SQL_CHUNK = 500  # keys per IN (...) query; SQLite allows 999 parameters by default


def _open(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode, WAL, waiting up to 30 s for another writer (another
    connection of this store, or another worker process on the host)."""
    db = sqlite3.connect(str(path), isolation_level=None, timeout=30, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    # A process crash loses nothing (the WAL is written before the ack); only an OS crash
    # or power loss can forget the last keys, and then a job may run twice (at-least-once).
    db.execute("PRAGMA synchronous=OFF")
    return db


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

    The event loop never waits on SQLite: lookups and commits run in one background thread
    on a connection of its own, batched. Lookups made during one event-loop turn share one
    query; ``mark_completed`` group-commits (keys recorded within
    :data:`GROUP_COMMIT_DELAY` share one transaction), and each caller resumes once its key
    is committed (so the worker still records before it acks). For effects that must never
    repeat, use :meth:`completing` (on the caller's thread, in the caller's transaction).
    """

    def __init__(self, path: str | Path, ttl: float = DEFAULT_TTL) -> None:
        self.path = Path(path)
        self.ttl = ttl
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = _open(self.path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS completed (key TEXT PRIMARY KEY, at REAL NOT NULL) "
            "WITHOUT ROWID"
        )
        self._db.execute("DELETE FROM completed WHERE at < ?", (time.time() - ttl,))
        # One thread, so the background connection is used by one thread at a time, and
        # lookups and commits keep their order.
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="qw-idem")
        self._bg: sqlite3.Connection | None = None
        self._pending: dict[str, asyncio.Future[None]] = {}
        """Keys waiting for the next group commit."""
        self._committing: dict[str, asyncio.Future[None]] = {}
        """Keys whose commit runs in the background thread now."""
        self._flush_scheduled = False
        self._checks: dict[str, asyncio.Future[bool]] = {}
        self._check_scheduled = False

    @classmethod
    def default(cls, settings: Settings) -> SqliteStore:
        """The per-host store under ``settings.state_dir``."""
        return cls(settings.state_dir / DEFAULT_FILE)

    # -- in the background thread -------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        if self._bg is None:
            self._bg = _open(self.path)
        return self._bg

    def _select(self, keys: list[str]) -> set[str]:
        db, found = self._conn(), set[str]()
        for i in range(0, len(keys), _SQL_CHUNK):
            chunk = keys[i:i + _SQL_CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(r[0] for r in db.execute(
                f"SELECT key FROM completed WHERE key IN ({marks})", chunk))
        return found

    def _insert(self, keys: list[str]) -> None:
        db, now = self._conn(), time.time()
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR REPLACE INTO completed (key, at) VALUES (?, ?)",
                           [(k, now) for k in keys])
            db.execute("COMMIT")
        except sqlite3.Error:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _close_bg(self) -> None:
        if self._bg is not None:
            self._bg.close()
            self._bg = None

    # -- on the event loop ----------------------------------------------------------------
    async def is_completed(self, key: str) -> bool:
        """Lookups made during one event-loop turn share one query (one read transaction)."""
        if key in self._pending or key in self._committing:
            return True
        fut = self._checks.get(key)
        if fut is None:
            loop = asyncio.get_running_loop()
            fut = self._checks[key] = loop.create_future()
            if not self._check_scheduled:
                self._check_scheduled = True
                loop.call_soon(self._check)
        return await fut

    def _check(self) -> None:
        self._check_scheduled = False
        checks, self._checks = self._checks, {}
        if not checks:
            return
        done = asyncio.get_running_loop().run_in_executor(self._thread, self._select, list(checks))

        def answer(result: asyncio.Future[set[str]]) -> None:
            exc = result.exception()
            for key, fut in checks.items():
                if fut.done():
                    continue
                if exc is not None:
                    fut.set_exception(exc)
                else:
                    fut.set_result(key in result.result())

        done.add_done_callback(answer)

    async def mark_completed(self, key: str) -> None:
        fut = self._pending.get(key) or self._committing.get(key)
        if fut is None:
            loop = asyncio.get_running_loop()
            fut = self._pending[key] = loop.create_future()
            if len(self._pending) >= GROUP_COMMIT_MAX:
                self._flush()
            elif not self._flush_scheduled:
                self._flush_scheduled = True
                loop.call_later(GROUP_COMMIT_DELAY, self._flush)
        await fut

    def _flush(self) -> asyncio.Future[None] | None:
        """Commit every pending key in one transaction (in the background thread) and wake
        their callers once it is committed. Until then a key is "committing" and already
        counts as completed for :meth:`is_completed`."""
        self._flush_scheduled = False  # a timer still due finds nothing pending: harmless
        batch, self._pending = self._pending, {}
        if not batch:
            return None
        self._committing.update(batch)
        done = asyncio.get_running_loop().run_in_executor(self._thread, self._insert, list(batch))

        def wake(result: asyncio.Future[None]) -> None:
            exc = result.exception()
            for key, fut in batch.items():
                if self._committing.get(key) is fut:
                    del self._committing[key]
                if not fut.done():
                    if exc is not None:
                        fut.set_exception(exc)
                    else:
                        fut.set_result(None)

        done.add_done_callback(wake)
        return done

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
        """Commit what is pending, then close (waits for the background thread)."""
        done = self._flush()
        if done is not None:
            await asyncio.gather(done, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close_bg)
        self._thread.shutdown(wait=True)
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

"""The embedded default store: completed keys in a local SQLite file."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from queuewatch.config import Settings
from queuewatch.idempotency.common import DEFAULT_TTL, on_record
from queuewatch.sqlitedb import is_busy, use_wal

DEFAULT_FILE = "idempotency.sqlite3"
#: Records wait at most this long (seconds) to share one transaction with others.
GROUP_COMMIT_DELAY = 0.002
GROUP_COMMIT_MAX = 256
#: Seconds a confirmed outcome waits to be deleted with the next group commit.
CONFIRMED_DELAY = 1.0
#: Seconds a key waits for its outcome's record before it is committed with the outcome
#: (records normally end within a few ms; this bounds the time a finished job's key is not
#: yet committed while the event stream is slow or down).
OUTCOME_WAIT = 0.05
_SELECT_KEY = "SELECT 1 FROM completed WHERE key = ?"
_SELECT_OUTCOME = "SELECT outcome FROM unconfirmed WHERE key = ?"
_SQL_CHUNK = 500  # keys per IN (...) query; SQLite allows 999 parameters by default


def _open(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode, WAL, waiting up to 30 s for another writer (another
    connection of this store, or another worker process on the host)."""
    db = sqlite3.connect(str(path), isolation_level=None, timeout=30, check_same_thread=False)
    try:
        use_wal(db)  # (worker processes started together open a new file at once)
    except sqlite3.Error:
        db.close()
        raise
    # A process crash loses nothing (the WAL is written before the ack); only an OS crash
    # or power loss can forget the last keys, and then a job may run twice (at-least-once).
    db.execute("PRAGMA synchronous=OFF")
    return db


class SqliteStore:
    """Completed keys in a local SQLite file (WAL; safe for several processes on one host).

    The event loop never *waits* on SQLite. ``mark_completed`` group-commits (keys recorded
    within :data:`GROUP_COMMIT_DELAY` share one transaction), and each caller resumes once
    its key is committed (so the worker still records before it acks). Lookups and commits
    are made on the event loop on a connection that never waits for a lock (a point query, or
    a WAL append with ``synchronous=OFF``: microseconds); only when another connection or
    process holds the lock (SQLITE_BUSY) do they go to one background thread, which waits
    for it (lookups that do share one query per event-loop turn). Handing every lookup and
    commit to the thread cost the no-op worker about a sixth of its throughput in thread
    hops (BENCHMARKS.md, "Worker CPU per job"). For effects that must never
    repeat, use :meth:`completing` (on the caller's thread, in the caller's transaction).

    Outcomes live in a second table, ``unconfirmed``, only until :meth:`confirmed` (deletes
    ride along with the next group commit, or leave after :data:`CONFIRMED_DELAY`), so the
    file holds keys, not results, in the steady state. A key given with the future of its
    outcome's record waits for that record before its commit: once the outcome is on record
    the key is committed alone (no outcome written, none deleted: writing and deleting each
    outcome cost the no-op worker 1.14x in an A/B, BENCHMARKS.md); an outcome that was not
    recorded (the record held out, failed), or not within :data:`OUTCOME_WAIT`, is committed
    with the key, as before. The caller acks after both anyway, so the ack waits for the
    record, then one commit.
    """

    def __init__(self, path: str | Path, ttl: float = DEFAULT_TTL) -> None:
        self.path = Path(path)
        self.ttl = ttl
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = _open(self.path)
        self._fast = _open(self.path)
        """For lookups and commits on the event loop: SQLITE_BUSY at once, never a wait
        (opened like the others, so processes creating the file at once wait for each other,
        then told not to wait)."""
        self._fast.execute("PRAGMA busy_timeout = 0")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS completed (key TEXT PRIMARY KEY, at REAL NOT NULL) "
            "WITHOUT ROWID"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS unconfirmed (key TEXT PRIMARY KEY, outcome TEXT NOT NULL) "
            "WITHOUT ROWID"
        )
        self._db.execute("DELETE FROM completed WHERE at < ?", (time.time() - ttl,))
        self._db.execute("DELETE FROM unconfirmed WHERE key NOT IN (SELECT key FROM completed)")
        # One thread, so the background connection is used by one thread at a time, and
        # lookups and commits keep their order.
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="qw-idem")
        self._bg: sqlite3.Connection | None = None
        self._pending: dict[str, asyncio.Future[None]] = {}
        """Keys waiting for the next group commit."""
        self._waiting: dict[str, asyncio.Future[None]] = {}
        """Keys waiting for their outcome's record before they join the group commit."""
        self._soon_scheduled = False
        self._wait_deadlines: collections.deque[tuple[float, str]] = collections.deque()
        self._wait_timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._outcomes: dict[str, str] = {}
        """Outcomes of pending keys."""
        self._confirmed: list[str] = []
        """Keys whose outcome is to be deleted with the next commit."""
        self._committing: dict[str, asyncio.Future[None]] = {}
        """Keys whose commit runs in the background thread now."""
        self._flush_scheduled = False
        self._confirm_scheduled = False
        self.busy_commits = 0
        self.busy_reads = 0
        """Group commits that found the write lock taken and waited in the thread."""
        self._checks: dict[str, asyncio.Future[tuple[bool, str | None]]] = {}
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

    def _select(self, keys: list[str]) -> dict[str, str | None]:
        """Completed keys among ``keys`` -> their unconfirmed outcome (or None)."""
        db, found = self._conn(), dict[str, str | None]()
        for i in range(0, len(keys), _SQL_CHUNK):
            chunk = keys[i:i + _SQL_CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update((r[0], r[1]) for r in db.execute(
                f"SELECT c.key, u.outcome FROM completed c LEFT JOIN unconfirmed u "
                f"ON u.key = c.key WHERE c.key IN ({marks})", chunk))
        return found

    def _insert(self, keys: list[str], outcomes: dict[str, str], confirmed: list[str],
                db: sqlite3.Connection | None = None) -> None:
        db, now = db or self._conn(), time.time()
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR REPLACE INTO completed (key, at) VALUES (?, ?)",
                           [(k, now) for k in keys])
            db.executemany("INSERT OR REPLACE INTO unconfirmed (key, outcome) VALUES (?, ?)",
                           outcomes.items())
            db.executemany("DELETE FROM unconfirmed WHERE key = ?", [(k,) for k in confirmed])
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
        return (await self.completed_outcome(key))[0]

    async def completed_outcome(self, key: str) -> tuple[bool, str | None]:
        if key in self._pending or key in self._committing or key in self._waiting:
            return True, self._outcomes.get(key)
        try:
            # (the outcome only for a completed key: the common miss reads one index)
            row = self._fast.execute(_SELECT_KEY, (key,)).fetchone()
            if row is not None:
                row = self._fast.execute(_SELECT_OUTCOME, (key,)).fetchone()
                return True, None if row is None else row[0]
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            self.busy_reads += 1  # (rare in WAL mode: ask the thread, which may wait)
        else:
            return False, None
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

        def answer(result: asyncio.Future[dict[str, str | None]]) -> None:
            exc = result.exception()
            for key, fut in checks.items():
                if fut.done():
                    continue
                if exc is not None:
                    fut.set_exception(exc)
                else:
                    found = result.result()
                    fut.set_result((key in found, found.get(key)))

        done.add_done_callback(answer)

    async def mark_completed(self, key: str, outcome: str | None = None,
                             recorded: asyncio.Future[bool] | None = None) -> None:
        fut = self._pending.get(key) or self._committing.get(key) or self._waiting.get(key)
        if fut is None:
            loop = asyncio.get_running_loop()
            fut = loop.create_future()
            if outcome is not None:
                if recorded is not None and not recorded.done():
                    self._outcomes[key] = outcome  # (lookups meanwhile answer with it)
                    self._waiting[key] = fut
                    recorded.add_done_callback(functools.partial(self._recorded, key))
                    # (one timer for all: deadlines come in order)
                    self._wait_deadlines.append((loop.time() + OUTCOME_WAIT, key))
                    if self._wait_timer is None:
                        self._wait_timer = loop.call_at(self._wait_deadlines[0][0],
                                                        self._wait_expired)
                    await fut
                    return
                if recorded is None or not on_record(recorded):
                    self._outcomes[key] = outcome
            self._add_pending(key, fut, soon=False)
        await fut

    def _add_pending(self, key: str, fut: asyncio.Future[None], *, soon: bool) -> None:
        """Queue ``key`` for the next group commit: at once when the batch is full, else
        within GROUP_COMMIT_DELAY, or at the next loop turn when ``soon`` (the outcome records
        of one event batch end together: their keys share that commit)."""
        self._pending[key] = fut
        if len(self._pending) >= GROUP_COMMIT_MAX:
            self._flush()
        elif soon:
            if not self._soon_scheduled:
                self._soon_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush_soon)
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(GROUP_COMMIT_DELAY, self._flush)

    def _recorded(self, key: str, recorded: asyncio.Future[bool]) -> None:
        """``key``'s outcome record ended: commit the key, alone when the outcome is on record."""
        fut = self._waiting.pop(key, None)
        if fut is None:
            # (past OUTCOME_WAIT, or closed: committed, or about to be, with its outcome)
            if on_record(recorded) and not self._closed:
                if key in self._pending:
                    self._outcomes.pop(key, None)
                else:
                    self.confirmed(key)
            return
        if on_record(recorded):
            self._outcomes.pop(key, None)
        self._add_pending(key, fut, soon=True)

    def _wait_expired(self) -> None:
        """Keys whose outcome's record did not end within OUTCOME_WAIT: commit them with it."""
        self._wait_timer = None
        loop = asyncio.get_running_loop()
        now, deadlines, moved = loop.time(), self._wait_deadlines, False
        while deadlines and deadlines[0][0] <= now:
            key = deadlines.popleft()[1]
            fut = self._waiting.pop(key, None)
            if fut is not None:
                self._pending[key] = fut
                moved = True
        if deadlines:
            self._wait_timer = loop.call_at(deadlines[0][0], self._wait_expired)
        if moved:
            self._flush()

    def _flush_soon(self) -> None:
        self._soon_scheduled = False
        if self._pending:
            self._flush()

    def confirmed(self, key: str) -> None:
        self._confirmed.append(key)
        if not self._confirm_scheduled:
            # (a timer of its own: a record's group commit must not wait for this one)
            self._confirm_scheduled = True
            asyncio.get_running_loop().call_later(CONFIRMED_DELAY, self._flush_confirmed)

    def _flush_confirmed(self) -> None:
        self._confirm_scheduled = False
        if self._confirmed:
            self._flush()

    def _flush(self) -> asyncio.Future[None] | None:
        """Commit every pending key in one transaction (in the background thread) and wake
        their callers once it is committed. Until then a key is "committing" and already
        counts as completed for :meth:`is_completed`."""
        self._flush_scheduled = False  # a timer still due finds nothing pending: harmless
        batch, self._pending = self._pending, {}
        outcomes = {k: self._outcomes.pop(k) for k in batch if k in self._outcomes}
        confirmed, self._confirmed = self._confirmed, []
        if not batch and not confirmed:
            return None
        try:
            self._insert(list(batch), outcomes, confirmed, self._fast)
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                for fut in batch.values():
                    if not fut.done():
                        fut.set_exception(exc)
                return None
            # another writer holds the lock: wait for it in the background thread
        else:
            for fut in batch.values():
                if not fut.done():
                    fut.set_result(None)
            return None
        self.busy_commits += 1
        self._committing.update(batch)
        done = asyncio.get_running_loop().run_in_executor(
            self._thread, self._insert, list(batch), outcomes, confirmed)

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
        """Commit what is pending, then close (waits for the background thread). Keys still
        waiting for their outcome's record are committed with the outcome."""
        waiting, self._waiting = self._waiting, {}
        self._pending.update(waiting)
        if self._wait_timer is not None:
            self._wait_timer.cancel()
        self._closed = True
        done = self._flush()
        if done is not None:
            await asyncio.gather(done, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close_bg)
        self._thread.shutdown(wait=True)
        self._fast.close()
        self._db.close()

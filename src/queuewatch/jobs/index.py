"""The local index of the job events stream: SQLite, rebuilt from the stream at will.

The stream is the record; this file is a cache of it that answers "job 42?" with one
indexed lookup instead of a scan. It keeps every event (by job, and in stream order for the
live stream's resumption) and each job's folded state (for "scheduled jobs of queue Q").
It stores the offset it has read up to, so a restart reads only what is new; deleting the
file costs one re-read of the stream. Several processes on one host may share it (WAL).

Positions (``off``, ``idx``) keep growing for as long as the file lives, also when the stream
is deleted and declared again (its offsets then start over at 0): the events of such a new
stream are numbered after every position held (:meth:`JobIndex.new_life`), so what follows
positions — the live stream's ids and resumption, the webhook dispatcher's cursor — goes on.

Retention follows the stream's: events older than ``max_age`` are dropped, and a job whose
last event is older is gone (``unknown``), exactly as if the stream had dropped them.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from queuewatch.events import model as ev
from queuewatch.events.model import SYNC, Event
from queuewatch.jobs.state import JobState, JobStatus, fold
from queuewatch.sqlitedb import use_wal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    eid TEXT PRIMARY KEY, job TEXT NOT NULL, queue TEXT, at INTEGER NOT NULL,
    off INTEGER NOT NULL, idx INTEGER NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_job ON events(job);
CREATE INDEX IF NOT EXISTS events_pos ON events(off, idx);
CREATE TABLE IF NOT EXISTS jobs (
    job TEXT PRIMARY KEY, queue TEXT, state TEXT NOT NULL, due INTEGER, updated INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, queue);
CREATE INDEX IF NOT EXISTS jobs_updated ON jobs(updated);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


_HINT_RANK = {ev.ACCEPTED: 0, ev.SCHEDULED: 1, ev.CANCEL_REQUESTED: 2, ev.STARTED: 3,
              ev.ATTEMPT_FAILED: 4, ev.RETRY_SCHEDULED: 5, ev.SUCCEEDED: 6,
              ev.DEAD_LETTERED: 6, ev.CANCELLED: 6, ev.SKIPPED: 6, ev.REPLAYED: -1}


_SCHEDULED, _QUEUED, _RUNNING, _RETRYING = "scheduled", "queued", "running", "retrying"
_SUCCEEDED, _DEAD_LETTERED, _CANCELLED = "succeeded", "dead_lettered", "cancelled"
assert {_SCHEDULED, _QUEUED, _RUNNING, _RETRYING, _SUCCEEDED, _DEAD_LETTERED, _CANCELLED} <= {
    s.value for s in JobState}


def _hint(e: Event) -> tuple[str, int | None] | None:
    """(state, due) after ``e``, for the listing hint; None: ``e`` does not move the state."""
    due = e.data.get("due")
    due = due if isinstance(due, int) else None
    match e.kind:
        case ev.ACCEPTED | ev.SCHEDULED:
            if due is not None and due > e.at_ms:
                return _SCHEDULED, due
            return _QUEUED, None
        case ev.STARTED | ev.ATTEMPT_FAILED:
            return _RUNNING, None
        case ev.RETRY_SCHEDULED:
            return _RETRYING, due
        case ev.SUCCEEDED:
            return _SUCCEEDED, None
        case ev.DEAD_LETTERED:
            return _DEAD_LETTERED, None
        case ev.CANCELLED | ev.CANCEL_REQUESTED:
            return _CANCELLED, None
        case ev.SKIPPED:
            return None if e.data.get("copy_only") else (_CANCELLED, None)
        case ev.REPLAYED:
            return _QUEUED, None
    return None


def index_path(state_dir: Path, vhost: str, stream: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{vhost}__{stream}") or "default"
    return state_dir / "jobs" / f"{safe}.sqlite3"


class JobIndex:
    """The SQLite index at ``path`` (created on first use)."""

    def __init__(self, path: Path | str, *, max_age: float, result_ttl: float) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_age = max_age
        self.result_ttl = result_ttl
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                  timeout=30.0)
        use_wal(self.db)  # (two processes may create the index at once on a fresh host)
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self._last_trim = 0.0

    def close(self) -> None:
        self.db.close()

    # -- reading the stream ------------------------------------------------------------
    @property
    def next_offset(self) -> int | None:
        """The first stream offset not yet read (None: nothing read yet)."""
        row = self.db.execute("SELECT value FROM meta WHERE key='next_offset'").fetchone()
        return int(row[0]) if row else None

    def new_life(self, first_offset: int) -> None:
        """The stream was declared again (or read again from its start): number its events
        from the one at ``first_offset`` on after every position held here."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            top = db.execute("SELECT max(off) FROM events").fetchone()[0]
            base = self._base()
            if top is not None:
                base = max(base, int(top) + 1 - first_offset)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('base', ?)", (base,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _base(self) -> int:
        """What a stream offset is added to for a position (see :meth:`new_life`)."""
        row = self.db.execute("SELECT value FROM meta WHERE key='base'").fetchone()
        return int(row[0]) if row else 0

    def holds_any(self, event_ids: Sequence[str]) -> bool:
        """Does the index hold any of these events?"""
        for i in range(0, len(event_ids), 500):
            chunk = list(event_ids[i:i + 500])
            if self.db.execute(f"SELECT 1 FROM events WHERE eid IN ({','.join('?' * len(chunk))})"
                               " LIMIT 1", chunk).fetchone():
                return True
        return False

    def apply(self, events: Sequence[Event], next_offset: int) -> set[str]:
        """Store ``events`` (from messages up to ``next_offset`` - 1) in one transaction;
        returns the job ids they touch.

        The ``jobs`` table is a hint for listing (scheduled jobs of a queue, counts): the
        state after each job's latest event, kept with one upsert per batch. A job's status
        is always folded from all its events when asked (:meth:`status`)."""
        cutoff = self._cutoff_ms()
        rows = []
        latest: dict[str, tuple[int, int, str, str, int | None]] = {}
        base = self._base()
        for i, e in enumerate(events):
            if e.kind == SYNC or e.at_ms < cutoff:
                continue
            body = e.raw if e.raw is not None else json.dumps(
                e.to_json(), separators=(",", ":"), default=str)
            rows.append((e.event_id, e.job_id, e.queue, e.at_ms, base + (e.offset or 0), i, body))
            hint = _hint(e)
            if hint is not None:
                key = (e.at_ms, _HINT_RANK.get(e.kind, 9))
                old = latest.get(e.job_id)
                if old is None or key >= old[:2]:
                    latest[e.job_id] = (*key, e.queue, *hint)
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR IGNORE INTO events VALUES (?,?,?,?,?,?,?)", rows)
            db.executemany(
                "INSERT INTO jobs VALUES (?,?,?,?,?) ON CONFLICT(job) DO UPDATE SET "
                "queue=excluded.queue, state=excluded.state, due=excluded.due, "
                "updated=excluded.updated WHERE excluded.updated >= jobs.updated",
                [(job, q, state, due, at) for job, (at, _r, q, state, due) in latest.items()])
            # Set, not max(): a stream deleted and declared again starts at offset 0.
            db.execute("INSERT OR REPLACE INTO meta VALUES ('next_offset', ?)", (next_offset,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if time.monotonic() - self._last_trim > 60:
            self.trim()
        return {e.job_id for e in events if e.kind != SYNC}

    # -- answering ---------------------------------------------------------------------
    def events_of(self, job_id: str) -> list[Event]:
        rows = self.db.execute("SELECT body, off FROM events WHERE job=? ORDER BY off, idx",
                               (job_id,)).fetchall()
        return [Event.from_json(json.loads(body), off) for body, off in rows]

    def status(self, job_id: str) -> JobStatus:
        """Folded from the job's events that are within retention (older ones count as
        gone even before :meth:`trim` removes them)."""
        cutoff = self._cutoff_ms()
        events = [e for e in self.events_of(job_id) if e.at_ms >= cutoff]
        return fold(job_id, events, result_ttl=self.result_ttl)

    def jobs_in(self, states: Iterable[JobState], queue: str | None = None,
                limit: int = 1000) -> list[tuple[str, str, str, int | None]]:
        """(job id, queue, state, due ms) of jobs in ``states``, soonest due first."""
        names = [s.value for s in states]
        marks = ",".join("?" * len(names))
        sql = f"SELECT job, queue, state, due FROM jobs WHERE state IN ({marks})"
        args: list[object] = list(names)
        if queue is not None:
            sql += " AND queue=?"
            args.append(queue)
        sql += " ORDER BY due IS NULL, due, updated LIMIT ?"
        args.append(limit)
        return [(r[0], r[1], r[2], r[3]) for r in self.db.execute(sql, args).fetchall()]

    def counts(self, states: Iterable[JobState]) -> dict[tuple[str, str], int]:
        """{(queue, state): jobs} for ``states``."""
        names = [s.value for s in states]
        marks = ",".join("?" * len(names))
        rows = self.db.execute(
            f"SELECT queue, state, count(*) FROM jobs WHERE state IN ({marks}) GROUP BY 1, 2",
            names).fetchall()
        return {(r[0] or "", r[1]): r[2] for r in rows}

    def events_after(self, position: tuple[int, int] | None, limit: int = 1000) -> list[Event]:
        """Events after stream position ``(offset, index)`` in stream order (the live
        stream's resumption from ``Last-Event-ID``)."""
        off, idx = position if position is not None else (-1, -1)
        rows = self.db.execute(
            "SELECT body, off FROM events WHERE off > ? OR (off = ? AND idx > ?) "
            "ORDER BY off, idx LIMIT ?", (off, off, idx, limit)).fetchall()
        return [Event.from_json(json.loads(body), off) for body, off in rows]

    def position_of(self, event_id: str) -> tuple[int, int] | None:
        row = self.db.execute("SELECT off, idx FROM events WHERE eid=?", (event_id,)).fetchone()
        return (int(row[0]), int(row[1])) if row else None

    def event_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM events").fetchone()[0])

    # -- retention ---------------------------------------------------------------------
    def _cutoff_ms(self) -> int:
        return int((time.time() - self.max_age) * 1000)

    def trim(self) -> int:
        """Drop events and jobs past retention; returns the jobs dropped."""
        self._last_trim = time.monotonic()
        cutoff = self._cutoff_ms()
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            gone = db.execute("DELETE FROM jobs WHERE updated < ?", (cutoff,)).rowcount
            db.execute("DELETE FROM events WHERE at < ?", (cutoff,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return int(gone)

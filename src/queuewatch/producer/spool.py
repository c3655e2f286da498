"""The producer outbox's durable spool: jobs accepted while the broker was unreachable, in a
local SQLite file (WAL; one fsync per commit with ``fsync``, many jobs per commit).

Blocking calls, run on the outbox's one writer thread. A spool belongs to one producer at a
time (an exclusive ``flock`` on ``<file>.lock``): two drainers of one file would send every
job twice.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from queuewatch import envelope
from queuewatch.errors import ConfigError
from queuewatch.producer._common import Outgoing

SCHEMA = """
create table if not exists spool (
  seq integer primary key autoincrement,
  job_id text not null, queue text not null, exchange text not null, routing_key text not null,
  body blob not null, content_type text not null, ts integer not null, headers text not null,
  priority integer, due_ms integer, spooled_ms integer not null
);
create table if not exists failed (
  seq integer primary key, job_id text not null, queue text not null, row text not null,
  reason text not null, failed_ms integer not null
);
"""


@dataclass(frozen=True)
class Spooled:
    seq: int
    out: Outgoing
    due_ms: int | None
    """A delayed job: when it is due (epoch ms); the delay left is computed when it is sent."""
    spooled_ms: int


def due_of(out: Outgoing) -> int | None:
    if not out.exchange:
        return None
    published = out.headers.get(envelope.H_PUBLISHED_MS)
    delay = out.headers.get(envelope.H_DELAY_MS)
    if not isinstance(published, int) or not isinstance(delay, int):
        return None
    return published + delay


class Spool:
    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(str(path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(f"outbox spool {str(path)!r} cannot be written: "
                              f"{exc.strerror or exc}") from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            raise ConfigError(f"outbox spool {str(path)!r} is in use by another producer "
                              "(give each producer its own connection_name or outbox_dir)") from None
        try:
            self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self.db.execute("pragma journal_mode=wal")
            self.db.execute(f"pragma synchronous={'full' if fsync else 'normal'}")
            self.db.executescript(SCHEMA)
            self.db.execute("begin immediate")  # proves the file can be written, now
            self.db.execute("commit")
        except sqlite3.Error as exc:
            self.close()
            raise ConfigError(f"outbox spool {str(path)!r} cannot be written: {exc}") from None

    def close(self) -> None:
        db = getattr(self, "db", None)
        if db is not None:
            db.close()
            self.db = None  # type: ignore[assignment]
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    # -- writing ---------------------------------------------------------------------------
    def put(self, outs: Iterable[Outgoing]) -> None:
        """Append jobs in one transaction (one fsync)."""
        now = int(time.time() * 1000)
        rows = [(o.message_id, o.queue, o.exchange, o.routing_key, o.body, o.content_type,
                 o.timestamp, json.dumps(o.headers, separators=(",", ":")), o.priority,
                 due_of(o), now) for o in outs]
        self.db.execute("begin")
        try:
            self.db.executemany(
                "insert into spool (job_id, queue, exchange, routing_key, body, content_type, ts,"
                " headers, priority, due_ms, spooled_ms) values (?,?,?,?,?,?,?,?,?,?,?)", rows)
            self.db.execute("commit")
        except BaseException:
            self.db.execute("rollback")
            raise

    def delete(self, seqs: Iterable[int]) -> None:
        self.db.execute("begin")
        self.db.executemany("delete from spool where seq = ?", [(s,) for s in seqs])
        self.db.execute("commit")

    def fail(self, item: Spooled, reason: str) -> None:
        """Move a job the broker will never take (unroutable, refused) aside, kept."""
        o = item.out
        row = json.dumps({"exchange": o.exchange, "routing_key": o.routing_key,
                          "headers": o.headers, "content_type": o.content_type,
                          "body": o.body.decode("utf-8", "replace")}, default=str)
        self.db.execute("begin")
        self.db.execute("insert or replace into failed values (?,?,?,?,?,?)",
                        (item.seq, o.message_id, o.queue, row, reason, int(time.time() * 1000)))
        self.db.execute("delete from spool where seq = ?", (item.seq,))
        self.db.execute("commit")

    # -- reading ---------------------------------------------------------------------------
    def oldest(self, n: int) -> list[Spooled]:
        cur = self.db.execute(
            "select seq, job_id, queue, exchange, routing_key, body, content_type, ts, headers,"
            " priority, due_ms, spooled_ms from spool order by seq limit ?", (n,))
        out = []
        for (seq, job_id, queue, exchange, rk, body, ctype, ts, headers, prio, due,
             spooled) in cur.fetchall():
            hdrs: dict[str, Any] = json.loads(headers)
            out.append(Spooled(seq, Outgoing(queue, exchange, rk, bytes(body), ctype, job_id, ts,
                                             hdrs, prio), due, spooled))
        return out

    def depth(self) -> int:
        return int(self.db.execute("select count(*) from spool").fetchone()[0])

    def oldest_ms(self) -> int | None:
        row = self.db.execute("select min(spooled_ms) from spool").fetchone()
        return None if row[0] is None else int(row[0])

    def failed(self) -> int:
        return int(self.db.execute("select count(*) from failed").fetchone()[0])

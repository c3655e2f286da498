"""SQLite files that several processes share: WAL mode, and the one lock error it raises
without waiting.

Switching a *new* file to WAL answers "database is locked" at once (the busy timeout is not
consulted) to a connection racing another process's open of the same file: worker processes
started together (``worker --processes N``), or two commands on a fresh host. :func:`use_wal`
retries that switch; once the file is in WAL mode the pragma is a no-op.
"""

from __future__ import annotations

import sqlite3
import time

#: Longest wait (seconds) for the file's other openers when it is first switched to WAL.
WAL_TIMEOUT = 30.0
_RETRY_PAUSE = 0.02


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED: another connection holds the lock."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def use_wal(db: sqlite3.Connection, timeout: float = WAL_TIMEOUT) -> None:
    """Put ``db``'s file in WAL mode, waiting up to ``timeout`` s for other openers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() > deadline:
                raise
            time.sleep(_RETRY_PAUSE)

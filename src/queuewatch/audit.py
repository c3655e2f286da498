"""The audit log: one JSON line per destructive action, append-only, hash-chained.

Every replay, delete, purge, import, cancel and terminate (and the demo's vhost reset)
appends when, who (OS user), host, action, target (vhost/queue/job/worker), count, filter
and outcome (``ok``, ``partial`` or ``error`` with a detail). Read-only mode is checked here
too: callers invoke :func:`require_writable` before touching the broker.

The file is created 0600 (owner only) by its first open. Each entry carries ``prev``, the
SHA-256 of the line before it, and ``hash``, the SHA-256 of its own content, so
:func:`verify` (``queuewatch audit verify``) finds the first line that was changed, removed
or inserted. The chain has no secret key: it shows tampering by someone who did not
rewrite every later line, and cannot show the last lines cut off the end.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import getpass
import hashlib
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from queuewatch.config import Settings
from queuewatch.errors import QueuewatchError, ReadOnlyError
from queuewatch.redact import redact

Outcome = Literal["ok", "partial", "error"]
DESTRUCTIVE_ACTIONS = ("replay", "delete", "purge", "import", "cancel", "terminate",
                       "delete-vhost")
#: ``prev`` of the first chained entry of a log.
GENESIS = "0" * 64
#: Owner read/write only: the log names queues, jobs and users.
LOG_MODE = 0o600


class AuditError(QueuewatchError):
    """The audit log cannot be written (the action was not attempted)."""


def require_writable(settings: Settings, action: str) -> None:
    """Raise :class:`ReadOnlyError` in read-only mode (call BEFORE touching the broker)."""
    if settings.read_only:
        raise ReadOnlyError(action)


def current_user() -> str:
    """The OS user running queuewatch (for the audit log and control messages)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


@dataclass(frozen=True)
class AuditEntry:
    """One destructive action."""

    action: str
    target: Mapping[str, Any]
    """E.g. ``{"vhost": "/", "queue": "jobs.dlq"}`` or ``{"job_id": ..., "worker_id": ...}``."""
    outcome: Outcome
    count: int = 0
    filter: Mapping[str, Any] = field(default_factory=dict)
    detail: str = ""
    when: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())
    who: str = field(default_factory=current_user)
    host: str = field(default_factory=socket.gethostname)

    def to_json(self) -> str:
        """The entry as one JSON line, secrets redacted (a detail may quote an error that
        names a URL)."""
        return redact(json.dumps(asdict(self), sort_keys=True, default=str, ensure_ascii=False))


class AuditLog:
    """Appends :class:`AuditEntry` lines to ``path`` (parent directories created)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditLog:
        return cls(settings.audit_log_path)

    def _open(self) -> int:
        """The log opened for appending: created 0600 (never wider, whatever the umask), and
        an older log that is wider made 0600 when it is ours."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, LOG_MODE)
        try:
            st = os.fstat(fd)
            if st.st_mode & 0o777 != LOG_MODE and st.st_uid == os.getuid():
                os.fchmod(fd, LOG_MODE)
        except OSError:
            os.close(fd)
            raise
        return fd

    def check(self) -> None:
        """Fail early (before an action) when the log cannot be written."""
        try:
            os.close(self._open())
        except OSError as exc:
            raise AuditError(f"cannot write the audit log {str(self.path)!r}: {exc.strerror}") from exc

    def append(self, entry: AuditEntry) -> AuditEntry:
        try:
            fd = self._open()
            try:
                # Locked from reading the last line to writing ours: two processes appending
                # at once must not both chain onto the same line.
                fcntl.flock(fd, fcntl.LOCK_EX)
                body = json.loads(entry.to_json())
                body["prev"] = line_hash(_last_line(fd)) if os.fstat(fd).st_size else GENESIS
                body["hash"] = entry_hash(body)
                line = json.dumps(body, sort_keys=True, ensure_ascii=False) + "\n"
                os.write(fd, line.encode("utf-8"))  # one write: lines never interleave
                os.fsync(fd)
            finally:
                os.close(fd)  # releases the lock
        except OSError as exc:
            raise AuditError(f"cannot write the audit log {str(self.path)!r}: {exc.strerror}") from exc
        return entry

    def record(
        self, action: str, target: Mapping[str, Any], outcome: Outcome, *, count: int = 0,
        filter: Mapping[str, Any] | None = None, detail: str = "",
    ) -> AuditEntry:
        return self.append(AuditEntry(
            action=action, target=dict(target), outcome=outcome, count=count,
            filter=dict(filter or {}), detail=detail,
        ))

    def read(self) -> list[dict[str, Any]]:
        """Every entry, oldest first (an absent log is empty)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- the hash chain -------------------------------------------------------------------------

def line_hash(line: bytes) -> str:
    """SHA-256 of one stored line (without its newline): the next entry's ``prev``."""
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def entry_hash(body: Mapping[str, Any]) -> str:
    """SHA-256 of an entry's content (every field but ``hash``, canonical JSON)."""
    content = {k: v for k, v in body.items() if k != "hash"}
    text = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _last_line(fd: int, chunk: int = 4096) -> bytes:
    """The last non-empty line of the file open at ``fd``, read backwards from its end."""
    end = os.fstat(fd).st_size
    data = b""
    pos = end
    while pos > 0:
        step = min(chunk, pos)
        pos -= step
        data = os.pread(fd, step, pos) + data
        stripped = data.rstrip(b"\n")
        if b"\n" in stripped:
            return stripped.rsplit(b"\n", 1)[1]
    return data.rstrip(b"\n")


@dataclass(frozen=True)
class Verification:
    """What :func:`verify` found."""

    entries: int
    """Lines read."""
    unchained: int = 0
    """Entries written before the hash chain (no ``hash``): they cannot be checked."""
    bad_line: int | None = None
    """The first line (1-based) where the chain breaks, None when it holds."""
    reason: str = ""

    @property
    def intact(self) -> bool:
        return self.bad_line is None


def verify(path: Path) -> Verification:
    """Walk the chain from the first line; stop at the first one that does not hold.

    A changed line fails its own ``hash``; a removed or inserted line breaks the next
    entry's ``prev``. Entries without a hash (written before the chain existed) are counted
    as unchained, not judged, as long as they come before the chained ones."""
    try:
        lines = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        raise AuditError(f"audit log {str(path)!r} does not exist") from None
    except OSError as exc:
        raise AuditError(f"cannot read the audit log {str(path)!r}: {exc.strerror}") from exc
    prev: bytes | None = None
    chained = unchained = count = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        count += 1
        try:
            body = json.loads(line)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return Verification(count, unchained, number, "is not a JSON entry")
        if "hash" not in body:
            if chained:
                return Verification(count, unchained, number,
                                    "has no hash among hash-chained entries (inserted or rewritten)")
            unchained += 1
        elif body.get("hash") != entry_hash(body):
            return Verification(count, unchained, number,
                                "was changed after it was written (its hash does not match its content)")
        elif body.get("prev") != (GENESIS if prev is None else line_hash(prev)):
            why = ("the first entry does not start the chain: lines before it were removed"
                   if prev is None else
                   "does not follow the line before it: an entry was removed or inserted here, "
                   "or the line before it was edited")
            return Verification(count, unchained, number, why)
        else:
            chained += 1
        prev = line
    return Verification(count, unchained)

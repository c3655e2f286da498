"""The audit log: one JSON line per destructive action, append-only.

Every replay, delete, purge, import, cancel and terminate appends when, who (OS user),
host, action, target (vhost/queue/job/worker), count, filter and outcome (``ok``,
``partial`` or ``error`` with a detail). Read-only mode is checked here too: callers
invoke :func:`require_writable` before touching the broker.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from queuewatch.config import Settings
from queuewatch.errors import QueuewatchError, ReadOnlyError

Outcome = Literal["ok", "partial", "error"]
DESTRUCTIVE_ACTIONS = ("replay", "delete", "purge", "import", "cancel", "terminate")


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
        return json.dumps(asdict(self), sort_keys=True, default=str, ensure_ascii=False)


class AuditLog:
    """Appends :class:`AuditEntry` lines to ``path`` (parent directories created)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditLog:
        return cls(settings.audit_log_path)

    def check(self) -> None:
        """Fail early (before an action) when the log cannot be written."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8"):
                pass
        except OSError as exc:
            raise AuditError(f"cannot write the audit log {str(self.path)!r}: {exc.strerror}") from exc

    def append(self, entry: AuditEntry) -> AuditEntry:
        line = entry.to_json() + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode("utf-8"))  # one write: lines never interleave
                os.fsync(fd)
            finally:
                os.close(fd)
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

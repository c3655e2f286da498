"""The audit log and read-only mode, enforced in the core before any broker call."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from queuewatch.audit import AuditLog, require_writable
from queuewatch.config import Settings
from queuewatch.dlq import DeadLetterQueue
from queuewatch.errors import ReadOnlyError
from queuewatch.operator import cancel_job, terminate_worker


def test_append_creates_parents_and_keeps_lines(tmp_path: Path):
    log = AuditLog(tmp_path / "a" / "b" / "audit.jsonl")
    log.record("purge", {"vhost": "/", "queue": "q.dlq"}, "ok", count=3)
    log.record("replay", {"vhost": "/", "queue": "q.dlq"}, "partial", count=1,
               filter={"text": "x"}, detail="unroutable=2")
    lines = (tmp_path / "a" / "b" / "audit.jsonl").read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["action"] == "purge" and first["count"] == 3 and first["outcome"] == "ok"
    assert first["who"] and first["host"] and first["when"].endswith("+00:00")
    assert log.read()[1]["filter"] == {"text": "x"}


def test_missing_log_reads_empty(tmp_path: Path):
    assert AuditLog(tmp_path / "none.jsonl").read() == []


@pytest.fixture
def read_only(tmp_path: Path) -> Settings:
    return replace(Settings(), read_only=True, state_dir=tmp_path)


async def test_core_refuses_destructive_actions_in_read_only_mode(read_only: Settings):
    # Given read-only settings and NO broker connection at all (None):
    # every destructive call must refuse before it would touch one
    dlq = DeadLetterQueue(None, None, read_only, "q.dlq")  # type: ignore[arg-type]
    for call in (lambda: dlq.replay(), lambda: dlq.delete(["j"]), lambda: dlq.purge(),
                 lambda: dlq.import_("x.jsonl")):
        with pytest.raises(ReadOnlyError):
            await call()
    with pytest.raises(ReadOnlyError):
        await cancel_job(None, read_only, "job")  # type: ignore[arg-type]
    with pytest.raises(ReadOnlyError):
        terminate_worker(read_only, 1)
    with pytest.raises(ReadOnlyError, match="read-only"):
        require_writable(read_only, "purge")
    # and nothing was audited: nothing was done
    assert AuditLog.from_settings(read_only).read() == []

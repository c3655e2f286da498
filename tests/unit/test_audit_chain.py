"""The audit log is 0600 from its first byte and hash-chained: `queuewatch audit verify`
finds the first changed, removed or inserted entry; a log from before the chain is said to
be unverifiable, not a crash."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from queuewatch.audit import AuditLog, verify
from tests.cli_helpers import qw


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def wide_umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_check_creates_the_log_0600(tmp_path, wide_umask):
    # check() runs before the first action: it used to create the file 0644
    log = AuditLog(tmp_path / "state" / "audit.jsonl")
    log.check()
    assert _mode(log.path) == 0o600
    log.record("purge", {"queue": "q"}, "ok")
    assert _mode(log.path) == 0o600


def test_an_older_wider_log_is_made_0600(tmp_path, wide_umask):
    path = tmp_path / "audit.jsonl"
    path.write_text("")
    path.chmod(0o644)
    AuditLog(path).record("purge", {"queue": "q"}, "ok")
    assert _mode(path) == 0o600


def _log(tmp_path: Path, n: int = 5) -> Path:
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(n):
        log.record("delete", {"vhost": "/", "queue": f"q{i}.dlq"}, "ok", count=i, detail="ü")
    return log.path


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_an_untouched_log_verifies(tmp_path):
    path = _log(tmp_path)
    result = verify(path)
    assert result.intact and result.entries == 5 and result.unchained == 0
    first = json.loads(_lines(path)[0])
    assert first["prev"] == "0" * 64 and len(first["hash"]) == 64


def test_a_changed_entry_is_found(tmp_path):
    path = _log(tmp_path)
    lines = _lines(path)
    lines[2] = lines[2].replace('"count": 2', '"count": 200')
    _write(path, lines)
    result = verify(path)
    assert result.bad_line == 3 and "changed" in result.reason


def test_a_rehashed_change_breaks_the_next_line(tmp_path):
    # Given someone who changed line 2 and recomputed its own hash (but not the chain)
    from queuewatch.audit import entry_hash

    path = _log(tmp_path)
    lines = _lines(path)
    body = json.loads(lines[1])
    body["outcome"] = "error"
    body["hash"] = entry_hash(body)
    lines[1] = json.dumps(body, sort_keys=True, ensure_ascii=False)
    _write(path, lines)
    result = verify(path)
    assert result.bad_line == 3 and "removed or inserted" in result.reason


@pytest.mark.parametrize(("index", "bad"), [(0, 1), (2, 3)])
def test_a_removed_entry_is_found(tmp_path, index, bad):
    path = _log(tmp_path)
    lines = _lines(path)
    del lines[index]
    _write(path, lines)
    result = verify(path)
    assert result.bad_line == bad, result


def test_an_inserted_unhashed_entry_is_found(tmp_path):
    path = _log(tmp_path)
    lines = _lines(path)
    lines.insert(3, json.dumps({"action": "purge", "outcome": "ok"}))
    _write(path, lines)
    assert verify(path).bad_line == 4


def test_a_log_from_before_the_chain_is_unverifiable_not_a_crash(tmp_path):
    path = tmp_path / "audit.jsonl"
    old = [json.dumps({"action": "purge", "target": {"queue": f"q{i}"}, "outcome": "ok"}) for i in range(3)]
    _write(path, old)
    assert verify(path).intact and verify(path).unchained == 3
    # and new entries chain onto it
    AuditLog(path).record("delete", {"queue": "q"}, "ok")
    result = verify(path)
    assert result.intact and result.unchained == 3 and result.entries == 4


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return qw("audit", "verify", *args)


def test_audit_verify_command(tmp_path):
    path = _log(tmp_path)
    ok = _cli(str(path))
    assert ok.returncode == 0 and "5 entries, hash chain intact" in ok.stdout
    lines = _lines(path)
    del lines[1]
    _write(path, lines)
    bad = _cli(str(path))
    assert bad.returncode == 1 and "TAMPERED: line 2" in bad.stdout
    legacy = tmp_path / "old.jsonl"
    _write(legacy, [json.dumps({"action": "purge"})])
    old = _cli(str(legacy))
    assert old.returncode == 0 and "none hash-chained" in old.stdout
    missing = _cli(str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr

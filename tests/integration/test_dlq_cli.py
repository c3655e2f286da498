"""The CLI faces of the DLQ and operator actions: read-only refusals, the audit trail,
confirmation, JSON output."""

from __future__ import annotations

import json
import os

from queuewatch.audit import AuditLog
from tests.helpers import depth
from tests.integration.test_dlq_support import publish_dead_letters, setup_jobs


async def test_read_only_refuses_every_destructive_command(cli, connection, settings, vhost,
                                                           tmp_path):
    # Given a DLQ with 5 dead letters and an export file
    await setup_jobs(connection, vhost)
    ids = await publish_dead_letters(connection, "jobs", 5)
    export = tmp_path / "e.jsonl"
    assert (await cli("dlq", "export", "jobs", str(export)))[0] == 0
    commands = [
        ("dlq", "replay", "jobs", "--yes"),
        ("dlq", "delete", "jobs", ids[0]),
        ("dlq", "purge", "jobs", "--yes"),
        ("dlq", "import", "jobs", str(export)),
        ("jobs", "cancel", ids[0], "--worker", "w1"),
        ("workers", "terminate", "--pid", str(os.getpid())),
    ]
    # When each runs with --read-only
    for command in commands:
        code, _out, err = await cli(*command, "--read-only")
        # Then each is refused with exit 2 and one line naming read-only mode
        assert code == 2, command
        assert err.count("\n") == 1 and "read-only" in err, (command, err)
    # And nothing changed, and nothing was audited (nothing was done)
    assert await depth(connection, "jobs.dlq") == 5 and await depth(connection, "jobs") == 0
    assert AuditLog.from_settings(settings).read() == []


async def test_read_only_from_the_environment(cli, connection, vhost, monkeypatch):
    await setup_jobs(connection, vhost)
    await publish_dead_letters(connection, "jobs", 2)
    monkeypatch.setenv("QUEUEWATCH_READ_ONLY", "true")
    code, _, err = await cli("dlq", "purge", "jobs", "--yes")
    assert code == 2 and "read-only" in err
    # reading is still allowed
    code, out, _ = await cli("dlq", "list", "jobs", "--json")
    assert code == 0 and json.loads(out)["total"] == 2
    assert await depth(connection, "jobs.dlq") == 2


async def test_audit_log_records_each_allowed_action(cli, connection, settings, vhost, tmp_path):
    await setup_jobs(connection, vhost)
    ids = await publish_dead_letters(connection, "jobs", 6)
    export = tmp_path / "e.jsonl"
    steps = [
        ("dlq", "export", "jobs", str(export)),
        ("dlq", "replay", "jobs", "--yes", "--job", ids[0], "--job", ids[1]),
        ("dlq", "delete", "jobs", ids[2]),
        ("dlq", "purge", "jobs", "--yes"),
        ("dlq", "import", "jobs", str(export)),
    ]
    for step in steps:
        code, out, err = await cli(*step)
        assert code == 0, (step, out, err)
    entries = AuditLog.from_settings(settings).read()
    # export is not destructive: not audited
    assert [(e["action"], e["outcome"], e["count"]) for e in entries] == [
        ("replay", "ok", 2), ("delete", "ok", 1), ("purge", "ok", 3), ("import", "ok", 6)]
    replay = entries[0]
    assert replay["target"] == {"vhost": vhost, "queue": "jobs.dlq", "force": False,
                                "rate": None, "max_replays": 3, "via": "messages"}
    assert replay["filter"] == {"job_ids": sorted(ids[:2])}
    assert replay["who"] and replay["host"] and replay["when"]
    assert await depth(connection, "jobs.dlq") == 6 and await depth(connection, "jobs") == 2


async def test_purge_without_terminal_or_yes_is_refused(cli, connection, vhost):
    await setup_jobs(connection, vhost)
    await publish_dead_letters(connection, "jobs", 3)
    code, _, err = await cli("dlq", "purge", "jobs")
    assert code == 2 and "--yes" in err
    assert await depth(connection, "jobs.dlq") == 3


async def test_list_and_show_json(cli, connection, vhost):
    await setup_jobs(connection, vhost)
    ids = await publish_dead_letters(connection, "jobs", 4)
    code, out, _ = await cli("dlq", "list", "jobs", "--json", "--offset", "1", "--limit", "2")
    data = json.loads(out)
    assert code == 0 and [i["job_id"] for i in data["items"]] == ids[1:3]
    assert data["items"][0]["reason"] == "failed" and data["items"][0]["route"] == "(default) -> jobs"
    code, out, _ = await cli("dlq", "show", "jobs", ids[3], "--json")
    shown = json.loads(out)
    assert shown["job_id"] == ids[3] and shown["death"]["error_type"] == "ValueError"
    assert '"n": 3' in shown["body"]
    code, out, _ = await cli("dlq", "list", "jobs")
    assert code == 0 and ids[0] in out and "ValueError" in out
    code, _, err = await cli("dlq", "show", "jobs", "missing")
    assert code == 2 and "missing" in err
    code, out, _ = await cli("dlq", "replay", "jobs", "--dry-run", "--json")
    assert code == 0 and json.loads(out)["replayed"] == 4
    assert await depth(connection, "jobs.dlq") == 4

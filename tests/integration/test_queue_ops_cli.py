"""``queuewatch queues peek|purge|move|publish`` and ``queuewatch dlq causes|export --cause``
on the real broker: the same core functions as the console's queue actions and cause export
(``cli``: tests/integration/conftest.py)."""

from __future__ import annotations

import json

from queuewatch.audit import AuditLog
from queuewatch.topology import QueueSpec
from tests.helpers import declare, depth, drain, wait_until
from tests.tui.live_helpers import CAUSES, no_consumers, park_causes


async def test_queue_peek_move_purge_publish_and_their_audit(cli, connection, mgmt, settings,
                                                             vhost):
    # Given 'src' with three test jobs published through the CLI, and an empty 'dst'
    await declare(connection, vhost, QueueSpec("src"), QueueSpec("dst"), mgmt=mgmt)
    ids = []
    for i in range(3):
        code, out, _err = await cli("queues", "publish", "src", "--payload", json.dumps({"n": i}))
        assert code == 0 and out.startswith("published job ")
        ids.append(out.split()[2])
    # When peeked, Then the three show in order and stay
    code, out, _err = await cli("queues", "peek", "src", "--json")
    peek = json.loads(out)
    assert code == 0 and [i["job_id"] for i in peek["items"]] == ids
    assert json.loads(peek["items"][0]["body"]) == {"n": 0}
    assert await depth(connection, "src") == 3
    # When moved (once the peek's own consumer is gone), Then all three land in 'dst', none
    # held back, none in doubt
    await wait_until(lambda: no_consumers(connection, "src"), what="the peek's consumer gone")
    code, out, _err = await cli("queues", "move", "src", "dst", "--yes")
    assert code == 0, out
    assert out.strip() == "moved 3 of 3 messages from src to dst; held back in src: 0; in doubt: 0"
    assert await depth(connection, "src") == 0
    got = await drain(connection, "dst", 3)
    assert [m.message_id for m in got] == ids  # same order, same ids
    # When 'dst' gets two more and is purged, the count is said
    await cli("queues", "publish", "dst")
    await cli("queues", "publish", "dst")
    code, out, _err = await cli("queues", "purge", "dst", "--yes")
    assert code == 0 and out.strip() == "purged 2 messages from dst"
    # And each change is in the audit log
    actions = [(e["action"], e["count"]) for e in AuditLog.from_settings(settings).read()]
    assert actions == [("publish_test", 1)] * 3 + [("move", 3)] + [("publish_test", 1)] * 2 + \
        [("purge", 2)]


async def test_queue_actions_read_only_and_bad_input_say_one_line(cli, connection, mgmt,
                                                                  settings, vhost):
    await declare(connection, vhost, QueueSpec("src"), QueueSpec("dst"), mgmt=mgmt)
    await cli("queues", "publish", "src")
    for command in (("purge", "src", "--yes"), ("move", "src", "dst", "--yes"),
                    ("publish", "src")):
        code, _out, err = await cli("queues", *command, "--read-only")
        assert code == 2 and err.count("\n") == 1 and "read-only" in err, (command, err)
    for command, fragment in ((("move", "src", "src", "--yes"), "to itself"),
                              (("publish", "src", "--payload", "{x"), "not JSON"),
                              (("publish", "nosuch"), "matched no queue"),
                              (("peek", "no such!"), "queue 'no such!' does not exist"),
                              (("peek", "bad\x01name"), "control character")):
        code, _out, err = await cli("queues", *command)
        assert code == 2 and err.count("\n") == 1 and fragment in err, (command, err)
    assert await depth(connection, "src") == 1
    # And only what was tried is audited: the first test job, and the one nothing could take
    assert [(e["action"], e["outcome"], e["target"]["queue"])
            for e in AuditLog.from_settings(settings).read()] == [
        ("publish_test", "ok", "src"), ("publish_test", "error", "nosuch")]


async def test_dlq_causes_and_export_of_one_cause(cli, connection, mgmt, vhost, tmp_path):
    # Given five dead letters of two causes
    await declare(connection, vhost, QueueSpec("orders"), mgmt=mgmt)
    await park_causes(connection, "orders", CAUSES)
    # When the causes are listed, Then each has its count, most frequent first
    code, out, _err = await cli("dlq", "causes", "orders", "--json")
    causes = json.loads(out)["causes"]
    assert code == 0
    assert [(c["cause"], c["count"]) for c in causes] == [
        ("ValueError: bad input <n>", 3), ("KeyError: <str>", 2)]
    # When one cause is exported, Then the file holds exactly that group's messages
    export = tmp_path / "keyerror.jsonl"
    code, out, _err = await cli("dlq", "export", "orders", str(export), "--cause", "KeyError: <str>")
    assert code == 0 and out.startswith("exported 2 dead letters (cause 'KeyError: <str>')")
    lines = [json.loads(line) for line in export.read_text().splitlines()]
    assert [json.loads(rec["body_text"])["job"] for rec in lines] == ["j2", "j4"]
    assert await depth(connection, "orders.dlq") == 5
    # And replay selects by the same cause
    code, out, _err = await cli("dlq", "replay", "orders", "--cause", "ValueError: bad input <n>",
                                "--dry-run")
    assert code == 0 and "matched 3" in out

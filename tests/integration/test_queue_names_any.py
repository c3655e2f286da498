"""``queuewatch queues ...`` takes every queue name RabbitMQ takes (any UTF-8 up to 255
bytes: ``svc|orders``, ``dst (v2)``), as ``queuewatch dlq ...`` does: they used to be refused
with "use letters, digits, '_', '.', ':' or '-'" (the rule for queues queuewatch declares).
An empty name, one with a control character, one that is not UTF-8 or one over 255 bytes is
still one error line, exit 2, before anything is touched or audited (``cli``:
tests/integration/conftest.py)."""

from __future__ import annotations

import json

import aio_pika
import pytest

from queuewatch.audit import AuditLog
from tests.helpers import depth, drain, wait_until
from tests.tui.live_helpers import no_consumers

ODD = "svc|orders"
TO = "dst (v2)"
LONGEST = "é" * 127 + "a"  # 255 bytes: the most RabbitMQ takes


async def _declare_with(connection, *names: str, messages: int = 0) -> list[str]:  # type: ignore[no-untyped-def]
    """Declare ``names`` as plain durable queues (not through QueueSpec, which declares only
    queuewatch's own names) and put ``messages`` messages in the first; their ids."""
    channel = await connection.channel()
    try:
        for name in names:
            await channel.declare_queue(name, durable=True)
        ids = [f"m{i}" for i in range(messages)]
        for mid in ids:
            await channel.default_exchange.publish(
                aio_pika.Message(b'{"n": 1}', message_id=mid), routing_key=names[0])
        return ids
    finally:
        await channel.close()


async def test_peek_move_purge_a_queue_named_like_svc_bar_orders(cli, connection, settings):
    # Given 'svc|orders' holding three messages and an empty 'dst (v2)'
    ids = await _declare_with(connection, ODD, TO, messages=3)
    # When peeked, Then the three show, in order, and stay
    code, out, err = await cli("queues", "peek", ODD, "--json")
    assert code == 0, err
    peek = json.loads(out)
    assert peek["queue"] == ODD and [i["message_id"] for i in peek["items"]] == ids
    assert await depth(connection, ODD) == 3
    # When moved to 'dst (v2)', Then all three are there, none held back
    await wait_until(lambda: no_consumers(connection, ODD), what="the peek's consumer gone")
    code, out, err = await cli("queues", "move", ODD, TO, "--yes")
    assert code == 0, err
    assert out.strip() == f"moved 3 of 3 messages from {ODD} to {TO}; held back in {ODD}: 0; " \
        "in doubt: 0"
    assert await depth(connection, ODD) == 0 and await depth(connection, TO) == 3
    # When 'svc|orders' gets a test job and is purged, Then the count is said
    code, out, err = await cli("queues", "publish", ODD)
    assert code == 0 and out.startswith("published job "), err
    code, out, err = await cli("queues", "purge", ODD, "--yes")
    assert code == 0 and out.strip() == f"purged 1 messages from {ODD}", err
    assert await depth(connection, ODD) == 0
    assert [m.message_id for m in await drain(connection, TO, 3)] == ids
    # And each is audited under the name as given
    assert [(e["action"], e["target"]["queue"]) for e in AuditLog.from_settings(settings).read()
            ] == [("move", ODD), ("publish_test", ODD), ("purge", ODD)]


async def test_pause_limit_resume_and_the_longest_name(cli, connection, settings):
    # Given 'svc|orders' and a queue with a 255-byte name holding one message
    await _declare_with(connection, ODD)
    await _declare_with(connection, LONGEST, messages=1)
    # When paused, limited and resumed, Then each is said and audited
    for args, said in ((("pause",), "paused 'svc|orders'"),
                       (("limit", "5"), "limit of 'svc|orders': 5 jobs/s"),
                       (("resume",), "resumed 'svc|orders'")):
        code, out, err = await cli("queues", args[0], ODD, *args[1:])
        assert code == 0 and out.startswith(said), (args, out, err)
    # And a 255-byte name is read like any other
    code, out, err = await cli("queues", "peek", LONGEST, "--json")
    assert code == 0 and json.loads(out)["items"][0]["message_id"] == "m0", err
    assert [(e["action"], e["target"]["queue"]) for e in AuditLog.from_settings(settings).read()
            ] == [("queue_pause", ODD), ("queue_limit", ODD), ("queue_resume", ODD)]


BAD_NAMES = [
    ("", "queue name must not be empty"),
    ("svc\x01orders", r"queue name 'svc\x01orders' contains a control character (U+0001)"),
    ("svc\torders", "contains a control character (U+0009)"),
    ("svc\x9borders", "contains a control character (U+009B)"),
    ("svc\udcfforders", "is not valid UTF-8"),  # an undecodable byte on the command line
    ("é" * 128, "is too long (the queue name is 256 bytes: AMQP names are at most 255 bytes)"),
]


@pytest.mark.parametrize(("name", "said"), BAD_NAMES, ids=["empty", "ctrl", "tab", "c1",
                                                           "not-utf8", "256-bytes"])
async def test_a_bad_name_is_one_line_exit_2_and_nothing_is_done(cli, connection, settings,
                                                                 name, said):
    await _declare_with(connection, ODD, messages=1)
    commands = [("peek", name), ("purge", name, "--yes"), ("move", name, ODD, "--yes"),
                ("publish", name), ("pause", name), ("resume", name), ("limit", name, "5")]
    for command in commands:
        code, out, err = await cli("queues", *command)
        assert code == 2 and out == "" and err.count("\n") == 1 and said in err, (command, err)
        assert "Traceback" not in err
    # The target of a move too, named as such
    code, _out, err = await cli("queues", "move", ODD, name, "--yes")
    assert code == 2 and err.count("\n") == 1 and "target queue name" in err and said in err, err
    assert await depth(connection, ODD) == 1
    assert AuditLog.from_settings(settings).read() == []

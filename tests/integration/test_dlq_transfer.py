"""Export -> purge -> import round-trips bodies and headers exactly; delete removes only
the selected dead letters."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

from queuewatch.dlq import DeadLetterQueue
from tests.helpers import depth
from tests.integration.test_dlq_support import (
    dead_headers,
    drain_ids,
    publish_dead_letters,
    setup_jobs,
    snapshot,
)

BINARY = bytes(range(256)) * 3


def rich_headers(i: int) -> dict:  # type: ignore[type-arg]
    h = dead_headers("jobs")
    h.update({
        "nested": {"level": 2, "inner": {"flag": True, "list": [1, "two", None]}},
        "when": dt.datetime(2024, 5, 1, 12, 30, 15, tzinfo=dt.UTC),
        "raw": bytearray(b"\x00\xff\xfe binary"),
        "big": 2**40, "neg": -7, "half": 1.5, "text": "na\u00efve \u2713",
        "x-death": [{"queue": "jobs", "reason": "rejected", "count": 1, "exchange": "",
                     "routing-keys": ["jobs"], "time": dt.datetime(2024, 5, 1, tzinfo=dt.UTC)}],
    })
    return h


async def test_export_purge_import_round_trips_byte_for_byte(connection, settings, vhost, tmp_path):
    # Given dead letters with binary, text and JSON bodies and richly typed headers
    await setup_jobs(connection, vhost)
    bodies = [BINARY, "caf\u00e9".encode(), b'{"k": [1, 2]}', b""]
    await publish_dead_letters(connection, "jobs", 4, headers=rich_headers, body=lambda i: bodies[i])
    dlq = DeadLetterQueue(connection, None, settings, "jobs.dlq")
    before = await snapshot(connection, "jobs.dlq")
    # When the DLQ is exported, purged, and imported again
    path = tmp_path / "dlq.jsonl"
    assert await dlq.export(path) == 4
    assert await snapshot(connection, "jobs.dlq") == before  # export changes nothing
    assert await dlq.purge() == 4
    assert await depth(connection, "jobs.dlq") == 0
    assert (await dlq.import_(path)).confirmed == 4
    # Then every body and header came back identical, in order
    after = await snapshot(connection, "jobs.dlq")
    assert [a[0] for a in after] == [b[0] for b in before]
    assert [a[1] for a in after] == bodies
    for (_, _, h_after), (_, _, h_before) in zip(after, before, strict=True):
        assert h_after == h_before
        assert isinstance(h_after["raw"], bytearray) and isinstance(h_after["when"], dt.datetime)
    # And the file is readable JSON lines with base64 bodies and text where it is UTF-8
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert "body_text" not in lines[0] and lines[1]["body_text"] == "caf\u00e9"
    assert lines[0]["headers"]["raw"] == {"bytearray": "AP/+IGJpbmFyeQ=="}


async def test_non_utf8_long_string_header_survives_as_bytes(connection, settings, vhost, tmp_path):
    # Given a message published by pika with a long-string header that is not UTF-8
    # (pamqp hands such a value over as bytes)
    await setup_jobs(connection, vhost)
    await asyncio.to_thread(_pika_publish, settings, "jobs.dlq")
    dlq = DeadLetterQueue(connection, None, settings, "jobs.dlq")
    [before] = (await dlq.peek()).items
    assert before.headers["blob"] == b"\xc3\x28"
    # When it is exported, purged and imported
    path = tmp_path / "x.jsonl"
    await dlq.export(path)
    await dlq.purge()
    await dlq.import_(path)
    # Then the bytes survive (they travel back as an AMQP byte array: pamqp cannot write a
    # long string that is not UTF-8)
    [item] = (await dlq.peek()).items
    assert bytes(item.headers["blob"]) == b"\xc3\x28" and item.body == b"\xc3\x28\x00"
    assert item.headers["n"] == 7


def _pika_publish(settings, queue: str) -> None:  # type: ignore[no-untyped-def]
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(settings.amqp_url_for()))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish("", queue, b"\xc3\x28\x00", pika.BasicProperties(
            message_id="bin", headers={"blob": b"\xc3\x28", "n": 7}))
    finally:
        conn.close()


async def test_delete_removes_only_selected(connection, settings, vhost):
    await setup_jobs(connection, vhost)
    ids = await publish_dead_letters(connection, "jobs", 50)
    dlq = DeadLetterQueue(connection, None, settings, "jobs.dlq")
    removed = await dlq.delete([ids[3], ids[40], "no-such-job"])
    assert sorted(removed) == sorted([ids[3], ids[40]])
    assert await drain_ids(connection, "jobs.dlq") == [j for j in ids if j not in (ids[3], ids[40])]


async def test_import_into_missing_queue_is_refused(connection, settings, vhost, tmp_path):
    from queuewatch.errors import NotFound

    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps({"properties": {}, "headers": {}, "body_b64": ""}) + "\n")
    dlq = DeadLetterQueue(connection, None, settings, "nope.dlq")
    try:
        await dlq.import_(path)
    except NotFound as exc:
        assert "nope.dlq" in str(exc)
    else:
        raise AssertionError("import into a missing queue must fail")

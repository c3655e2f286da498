"""Peek reads dead letters without losing or reordering them; death info is decoded."""

from __future__ import annotations

from queuewatch.dlq import DeadLetterFilter, DeadLetterQueue
from tests.helpers import depth
from tests.integration.test_dlq_support import drain_ids, publish_dead_letters, setup_jobs


async def test_peek_of_1000_keeps_same_messages_in_same_order(connection, settings, vhost):
    # Given a DLQ with 1,000 dead letters
    await setup_jobs(connection, vhost)
    ids = await publish_dead_letters(connection, "jobs", 1000)
    dlq = DeadLetterQueue(connection, None, settings, "jobs.dlq")
    # When we peek at several pages, the whole queue, and search it
    first = await dlq.peek(0, 50)
    middle = await dlq.peek(500, 20)
    whole = await dlq.peek(0, 1000)
    hit = await dlq.get(ids[777])
    # Then each page holds exactly the right messages in the right order
    assert [d.job_id for d in first.items] == ids[:50]
    assert [d.position for d in middle.items] == list(range(500, 520))
    assert [d.job_id for d in middle.items] == ids[500:520]
    assert [d.job_id for d in whole.items] == ids and not whole.has_more
    assert first.total == 1000 and first.has_more
    assert hit is not None and hit.position == 777
    # And the queue still holds the same 1,000 messages in the same order
    assert await depth(connection, "jobs.dlq") == 1000
    assert await drain_ids(connection, "jobs.dlq") == ids


async def test_dead_letter_is_decoded(connection, settings, vhost):
    await setup_jobs(connection, vhost)
    ids = await publish_dead_letters(connection, "jobs", 3, body=lambda i: [
        b'{"b": 1, "a": [1, 2]}', "plain text \u00e9".encode(), bytes(range(256))][i])
    dlq = DeadLetterQueue(connection, None, settings, "jobs.dlq")
    page = await dlq.peek(0, 10)
    js, text, binary = page.items
    assert js.body_kind == "json" and '"a": [\n    1,' in js.body_pretty
    assert text.body_kind == "text" and text.body_pretty == "plain text \u00e9"
    assert binary.body_kind == "hex" and binary.body_pretty.startswith("00000000  00 01 02")
    d = js.death
    assert (d.source, d.reason, d.error_type, d.attempts) == ("queuewatch", "failed", "ValueError", 5)
    assert d.route is not None and (d.route.exchange, d.route.routing_key) == ("", "jobs")
    assert d.traceback and "Traceback" in d.traceback and d.first_death_ms and d.last_death_ms
    # find by text (body and error message) leaves everything in place
    found = await dlq.find(DeadLetterFilter(text="plain text"))
    assert [f.job_id for f in found] == [ids[1]]
    assert await depth(connection, "jobs.dlq") == 3


async def test_peek_beyond_the_end_and_empty_queue(connection, settings, vhost):
    await setup_jobs(connection, vhost)
    dlq = DeadLetterQueue(connection, None, settings, "jobs.dlq")
    assert (await dlq.peek(0, 10)).items == ()
    await publish_dead_letters(connection, "jobs", 5)
    page = await dlq.peek(10, 10)
    assert page.items == () and page.total == 5
    assert await depth(connection, "jobs.dlq") == 5

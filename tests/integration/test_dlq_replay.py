"""Replay sends dead letters back to their original route, loss-free, guarded, filtered."""

from __future__ import annotations

import aio_pika

from queuewatch import envelope as env
from queuewatch.dlq import DeadLetterFilter, DeadLetterQueue
from tests.helpers import depth
from tests.integration.test_dlq_support import (
    dead_headers,
    drain_ids,
    publish_dead_letters,
    setup_jobs,
    snapshot,
)


async def test_dry_run_changes_nothing_then_replay_moves_all(connection, settings, vhost):
    # Given 300 dead letters of "jobs"
    await setup_jobs(connection, vhost)
    ids = await publish_dead_letters(connection, "jobs", 300)
    dlq = DeadLetterQueue(connection, None, settings, "jobs.dlq")
    before = await snapshot(connection, "jobs.dlq")
    # When we dry-run a replay
    dry = await dlq.replay(dry_run=True)
    # Then it counts them all and changes nothing (same messages, same order, same headers)
    assert (dry.dry_run, dry.scanned, dry.matched, dry.replayed) == (True, 300, 300, 300)
    assert await snapshot(connection, "jobs.dlq") == before
    assert await depth(connection, "jobs") == 0
    # When we replay for real (small window: many rounds of confirms)
    result = await dlq.replay(window=37)
    # Then every job is back in "jobs" exactly once and the DLQ is empty
    assert (result.replayed, result.skipped, result.outcome) == (300, (), "ok")
    assert await depth(connection, "jobs.dlq") == 0
    channel = await connection.channel()
    q = await channel.declare_queue("jobs", passive=True)
    first = await q.get(no_ack=True)
    headers = first.headers
    assert headers[env.H_REPLAY_COUNT] == 1 and headers[env.H_ATTEMPT] == 1
    assert env.H_DEAD_REASON not in headers and env.H_ORIGINAL_QUEUE in headers
    await channel.close()
    assert [first.message_id, *await drain_ids(connection, "jobs")] == ids


async def _kill_and_reanimate(connection, queue: str) -> None:  # type: ignore[no-untyped-def]
    """What a worker does when a replayed job fails again: park it in the DLQ, keeping
    its replay count."""
    channel = await connection.channel(publisher_confirms=True)
    q = await channel.declare_queue(queue, passive=True)
    message = await q.get()
    headers = dict(message.headers)
    headers.update(dead_headers(queue, replay_count=int(headers.get(env.H_REPLAY_COUNT, 0))))
    await channel.default_exchange.publish(
        aio_pika.Message(message.body, message_id=message.message_id, headers=headers),
        routing_key=queue + ".dlq",
    )
    await message.ack()
    await channel.close()


async def test_replay_count_guard_refuses_the_n_plus_first_replay(connection, settings, vhost):
    # Given one poison job that fails every time it is replayed
    await setup_jobs(connection, vhost)
    [job] = await publish_dead_letters(connection, "jobs", 1)
    dlq = DeadLetterQueue(connection, None, settings, "jobs.dlq")
    # When it is replayed N=2 times (and dies again each time)
    for n in (1, 2):
        r = await dlq.replay(max_replays=2)
        assert r.replayed == 1, n
        await _kill_and_reanimate(connection, "jobs")
    # Then the third replay refuses it and it stays in the DLQ, reported
    refused = await dlq.replay(max_replays=2)
    assert refused.replayed == 0 and refused.outcome == "partial"
    assert [(s.job_id, s.why) for s in refused.skipped] == [(job, "replay-limit")]
    assert await depth(connection, "jobs.dlq") == 1 and await depth(connection, "jobs") == 0
    # And the default limit (3) refuses a message replayed 3 times, unless forced
    assert (await dlq.replay(max_replays=3)).replayed == 1
    await _kill_and_reanimate(connection, "jobs")
    assert (await dlq.replay()).count("replay-limit") == 1
    forced = await dlq.replay(force=True)
    assert forced.replayed == 1 and await depth(connection, "jobs") == 1


async def test_filter_replays_exactly_the_matching_subset(connection, settings, vhost):
    # Given 400 dead letters: every third one a TimeoutError, the rest ValueErrors
    await setup_jobs(connection, vhost)
    ids = await publish_dead_letters(
        connection, "jobs", 400,
        headers=lambda i: dead_headers("jobs", error_type="TimeoutError" if i % 3 == 0 else "ValueError"),
    )
    dlq = DeadLetterQueue(connection, None, settings, "jobs.dlq")
    # When only the TimeoutErrors are replayed (window smaller than the held rest)
    result = await dlq.replay(DeadLetterFilter(error_type="TimeoutError"), window=20)
    # Then exactly the matching subset moved, and the rest stayed in their original order
    wanted = [j for i, j in enumerate(ids) if i % 3 == 0]
    rest = [j for i, j in enumerate(ids) if i % 3 != 0]
    assert (result.scanned, result.matched, result.replayed) == (400, len(wanted), len(wanted))
    assert await drain_ids(connection, "jobs") == wanted
    assert await drain_ids(connection, "jobs.dlq") == rest


async def test_filters_by_text_age_and_job_ids(connection, settings, vhost):
    await setup_jobs(connection, vhost)
    old = env.now_ms() - 3_600_000
    ids = await publish_dead_letters(
        connection, "jobs", 10,
        headers=lambda i: dead_headers("jobs", dead_at_ms=old if i < 5 else None),
        body=lambda i: b'{"customer": "acme"}' if i in (1, 7) else b'{"customer": "other"}',
    )
    dlq = DeadLetterQueue(connection, None, settings, "jobs.dlq")
    assert [d.job_id for d in await dlq.find(DeadLetterFilter(text="acme"))] == [ids[1], ids[7]]
    assert len(await dlq.find(DeadLetterFilter(min_age=600))) == 5
    r = await dlq.replay(DeadLetterFilter(text="acme", max_age=600))
    assert r.replayed == 1 and await drain_ids(connection, "jobs") == [ids[7]]
    r = await dlq.replay(DeadLetterFilter.for_jobs([ids[0], ids[9]]))
    assert r.replayed == 2 and await drain_ids(connection, "jobs") == [ids[0], ids[9]]
    assert await depth(connection, "jobs.dlq") == 7


async def test_unroutable_replay_stays_in_dlq_and_is_reported(connection, settings, vhost):
    # Given dead letters whose original exchange no longer routes anywhere
    await setup_jobs(connection, vhost)
    channel = await connection.channel()
    await channel.declare_exchange("orders", aio_pika.ExchangeType.DIRECT)
    await channel.close()

    def headers(i: int) -> dict:  # type: ignore[type-arg]
        h = dead_headers("jobs")
        if i % 2:
            h[env.H_ORIGINAL_EXCHANGE] = "orders"
            h[env.H_ORIGINAL_ROUTING_KEY] = "nowhere"
        return h

    ids = await publish_dead_letters(connection, "jobs", 20, headers=headers)
    dlq = DeadLetterQueue(connection, None, settings, "jobs.dlq")
    result = await dlq.replay()
    # Then the routable half moved, the rest is reported and still in the DLQ, in order
    assert result.replayed == 10 and result.count("unroutable") == 10
    assert {s.job_id for s in result.skipped} == set(ids[1::2])
    assert await drain_ids(connection, "jobs") == ids[0::2]
    assert await drain_ids(connection, "jobs.dlq") == ids[1::2]


async def test_cancelled_replay_loses_nothing(connection, settings, vhost):
    # Given 3,000 dead letters and a throttled replay running as a task (as the TUI does)
    import asyncio

    from tests.helpers import Ledger

    await setup_jobs(connection, vhost)
    ids = await publish_dead_letters(connection, "jobs", 3000)
    ledger = Ledger(sent=set(ids), confirmed=set(ids))
    dlq = DeadLetterQueue(connection, None, settings, "jobs.dlq")
    halfway = asyncio.Event()

    def progress(done: int, total: int) -> None:
        if done >= 500:
            halfway.set()

    task = asyncio.create_task(dlq.replay(rate=1000, progress=progress))
    # When it is cancelled mid-way (once 500 moved: the set-up before the first republish
    # takes seconds on a loaded machine)
    await asyncio.wait_for(halfway.wait(), 60)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    # Then every job is either back in "jobs" or still in the DLQ (duplicates allowed)
    moved = await drain_ids(connection, "jobs")
    assert 0 < len(set(moved)) < 3000
    ledger.record_received(moved)
    ledger.record_received(await drain_ids(connection, "jobs.dlq"))
    assert ledger.summary()["lost"] == 0 and ledger.summary()["unexpected"] == 0


async def test_dead_letters_of_a_deleted_exchange_stay_and_the_rest_replays(
        connection, settings, vhost):
    # Given dead letters whose original exchange was deleted since (publishing to a missing
    # exchange would close the channel), interleaved with routable ones
    await setup_jobs(connection, vhost)

    def headers(i: int) -> dict:  # type: ignore[type-arg]
        h = dead_headers("jobs")
        if i % 3 == 0:
            h[env.H_ORIGINAL_EXCHANGE] = "gone"
        return h

    ids = await publish_dead_letters(connection, "jobs", 30, headers=headers)
    result = await DeadLetterQueue(connection, None, settings, "jobs.dlq").replay()
    # Then the routable 20 moved, the 10 others are reported and kept, in order
    assert result.replayed == 20 and result.count("unroutable") == 10
    assert await drain_ids(connection, "jobs") == [j for i, j in enumerate(ids) if i % 3]
    assert await drain_ids(connection, "jobs.dlq") == ids[0::3]

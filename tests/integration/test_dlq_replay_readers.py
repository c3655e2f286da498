"""A per-message replay (or a delete) that leaves many dead letters out reads the DLQ on several
channels (each holds a bounded number, so RabbitMQ's walk over a channel's unacked
deliveries stays short for every ack): what the filter selects arrives once, nothing is
lost, what it leaves out stays (in its order on a classic DLQ), and no channel or unacked
delivery is left behind, on a classic and on a quorum DLQ, and when the replay is cancelled
mid-way."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from queuewatch.dlq import DeadLetterFilter, DeadLetterQueue, readers
from tests.helpers import Ledger, consumers, wait_until
from tests.integration.test_dlq_kinds import declare_quorum
from tests.integration.test_dlq_support import (
    drain,
    drain_ids,
    publish_dead_letters,
    setup_jobs,
)

COUNT = 3000
HOLD = 100
"""Held dead letters per channel in these tests (the default is larger)."""


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Small channels, and a count of the DLQ channels each replay opens."""
    monkeypatch.setattr(readers, "HOLD_PER_CHANNEL", HOLD)
    counts: list[int] = []
    real = readers.Readers._open

    async def counting(self: readers.Readers) -> None:
        await real(self)
        counts.append(len(self.channels))

    monkeypatch.setattr(readers.Readers, "_open", counting)
    return counts


def body(i: int) -> bytes:
    """One in three dead letters is for customer acme."""
    return b'{"customer": "acme"}' if i % 3 == 0 else b'{"customer": "other"}'


@pytest.mark.parametrize("kind", ["classic", "quorum"])
async def test_a_text_filter_leaving_two_thirds_out_reads_on_many_channels_and_loses_nothing(
        connection, settings, vhost, opened, kind):
    # Given 3,000 dead letters of "jobs" (a classic or quorum DLQ), one in three for acme
    ids = await given_dead_letters(connection, vhost, kind, body=body)
    wanted = [j for i, j in enumerate(ids) if i % 3 == 0]
    rest = [j for i, j in enumerate(ids) if i % 3 != 0]
    dlq = DeadLetterQueue(connection, None, settings, "jobs.dlq")
    acme = DeadLetterFilter(text="acme")
    # When acme's dead letters are replayed (text: only the per-message replay can)
    dry = await dlq.replay(acme, dry_run=True)
    result = await dlq.replay(acme, window=50)
    # Then it read the DLQ on many channels (2,000 held: 100 per channel, plus what the
    # channel's consumer had prefetched, 3 x the window, when the replay moved on; a quorum
    # DLQ's consumer only moves on once held ones fill its prefetch)
    assert opened[-1] >= len(rest) // (HOLD + 3 * 50), opened
    assert (result.via, result.outcome, result.in_doubt) == ("messages", "ok", 0)
    assert dry.replayed == result.replayed == len(wanted)
    # And each of acme's arrived once, in DLQ order; the rest stayed (in order: classic)
    assert await drain_ids(connection, "jobs") == wanted
    # And no channel is left consuming the DLQ
    assert await consumers(connection, "jobs.dlq") == 0
    kept = await drain_with_counts(connection, "jobs.dlq")
    if kind == "classic":
        assert [j for j, _count in kept] == rest
    else:  # each given back once by the dry run and once by the replay (see the delete test)
        assert sorted(j for j, _count in kept) == sorted(rest)
        assert {count for _j, count in kept} == {2}, Counter(count for _j, count in kept)


async def test_cancelled_mid_way_on_many_channels_loses_nothing(connection, settings, vhost, opened):
    # Given 3,000 dead letters, one in three for acme, and a slow replay of acme's
    ids = await given_dead_letters(connection, vhost, "classic", body=body)
    dlq = DeadLetterQueue(connection, None, settings, "jobs.dlq")
    task = asyncio.create_task(dlq.replay(DeadLetterFilter(text="acme"), window=20, rate=400))
    # When it is cancelled once it reads on its third channel
    await wait_until(lambda: bool(opened) and opened[-1] >= 3, timeout=30,
                     what="the replay on its third channel")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Then every dead letter is either in "jobs" or still in the DLQ (duplicates allowed:
    # republished without an ack), and none of the others reached "jobs"
    ledger = Ledger()
    ledger.sent.update(ids)
    ledger.confirmed.update(ids)
    await asyncio.sleep(0.5)  # the channels' close-ok (their held dead letters go back)
    moved = await drain_ids(connection, "jobs")
    ledger.record_received(moved)
    ledger.record_received(await drain_ids(connection, "jobs.dlq"))
    summary = ledger.summary()
    assert summary["lost"] == 0, summary
    assert moved and set(moved) <= {j for i, j in enumerate(ids) if i % 3 == 0}


@pytest.mark.parametrize("kind", ["classic", "quorum"])
async def test_deleting_half_of_them_reads_on_many_channels_and_keeps_the_rest_in_order(
        connection, settings, vhost, opened, kind):
    # Given 3,000 dead letters (a classic or a quorum DLQ)
    ids = await given_dead_letters(connection, vhost, kind)
    dlq = DeadLetterQueue(connection, None, settings, "jobs.dlq")
    # When every other one is deleted by job id
    doomed = ids[::2]
    removed = await dlq.delete(doomed)
    # Then exactly those went, read on many channels
    assert sorted(r for r in removed if r) == sorted(doomed)
    assert opened[-1] >= (COUNT - len(doomed)) // (HOLD + 3 * HOLD), opened
    assert await consumers(connection, "jobs.dlq") == 0
    kept = await drain_with_counts(connection, "jobs.dlq")
    if kind == "classic":
        # and the rest stays in order
        assert [j for j, _count in kept] == ids[1::2]
    else:
        # and the rest stays, each given back once (a quorum queue counts a return as a
        # delivery): not to a consumer already cancelled (the delete moves to a new one only
        # once the current one has nothing in flight), nor to the last consumer while the
        # older channels close
        assert sorted(j for j, _count in kept) == sorted(ids[1::2])
        assert {count for _j, count in kept} == {1}, Counter(count for _j, count in kept)


async def given_dead_letters(connection, vhost: str, kind: str, count: int = COUNT, **kw) -> list[str]:  # type: ignore[no-untyped-def]
    """``count`` dead letters of "jobs" in its DLQ, a classic or a quorum queue."""
    await setup_jobs(connection, vhost)
    if kind == "quorum":
        channel = await connection.channel()
        await channel.queue_delete("jobs.dlq")
        await channel.close()
        await declare_quorum(connection, "jobs.dlq")
    return await publish_dead_letters(connection, "jobs", count, **kw)


async def drain_with_counts(connection, queue: str) -> list[tuple[str, object]]:
    """(message id, x-delivery-count) of everything in ``queue``, taken and acked."""
    return [(str(m.message_id), (m.headers or {}).get("x-delivery-count"))
            for m in await drain(connection, queue)]

"""A filtered replay (``--error-type``, ``--reason``) moved by the broker: a shovel through
header bindings that select exactly what the filter selects. Ledger: what matches arrives
once, nothing is lost, what does not match stays in the DLQ in its order, and the dry run
counts what is replayed."""

from __future__ import annotations

import asyncio

import pytest

from queuewatch.dlq import DeadLetterFilter, DeadLetterQueue
from queuewatch.dlq.shovel import SPLIT_PREFETCH, SRC_PREFETCH, ShovelNotApplicable
from queuewatch.topology import QueueSpec
from tests.helpers import Ledger, declare, depth, wait_until
from tests.integration.test_dlq_kinds import declare_quorum
from tests.integration.test_dlq_shovel import replay_exchanges
from tests.integration.test_dlq_support import (
    dead_headers,
    drain_ids,
    publish_dead_letters,
    setup_jobs,
)

TIMEOUTS = DeadLetterFilter(error_type="TimeoutError")


def half_timeouts(i: int) -> dict[str, object]:
    """Every other dead letter a timeout (some with a module: the last dotted part counts)."""
    if i % 2:
        return dead_headers("jobs", error_type="ValueError")
    return dead_headers("jobs", error_type="asyncio.TimeoutError" if i % 10 == 0
                        else "TimeoutError")


async def test_half_match_moved_by_the_broker_arrive_once_and_the_rest_keeps_its_order(
        connection, mgmt, settings, vhost):
    # Given 2,000 dead letters of "jobs", half of them timeouts
    await setup_jobs(connection, vhost)
    ids = await publish_dead_letters(connection, "jobs", 2000, headers=half_timeouts)
    matching = [ids[i] for i in range(0, 2000, 2)]
    rest = [ids[i] for i in range(1, 2000, 2)]
    dlq = DeadLetterQueue(connection, mgmt, settings, "jobs.dlq")
    # When the timeouts are replayed (the broker moving them)
    result = await dlq.replay(TIMEOUTS)
    # Then all of them were, by the shovel
    assert (result.replayed, result.via) == (1000, "shovel")
    assert (result.scanned, result.matched, result.outcome) == (2000, 1000, "ok")
    # And every timeout arrived once, none lost, in DLQ order
    ledger = Ledger()
    ledger.sent.update(matching)
    ledger.confirmed.update(matching)
    received = await drain_ids(connection, "jobs")
    ledger.record_received(received)
    assert ledger.summary()["lost"] == 0 and ledger.summary()["duplicated"] == 0
    assert not ledger.unexpected and received == matching
    # And the others stay in the DLQ in their order
    page = await dlq.peek(0, 1000)
    assert [d.job_id for d in page.items] == rest
    # And a dry run now counts nothing more to replay
    assert (await dlq.replay(TIMEOUTS, dry_run=True)).replayed == 0
    assert await replay_exchanges(mgmt, vhost) == []


@pytest.mark.parametrize(("dlq_kind", "jobs_kind", "step", "via", "prefetch"), [
    ("classic", "classic", 2, "shovel", SPLIT_PREFETCH),
    ("classic", "classic", 5, "shovel", SPLIT_PREFETCH),
    ("classic", "classic", 1, "shovel", SRC_PREFETCH),
    ("quorum", "classic", 1, "messages", None),
    ("quorum", "classic", 2, "messages", None),
    ("classic", "quorum", 2, "messages", None)])
async def test_the_shovel_prefetch_and_where_dead_letters_held_back_keep_the_replay_exact(
        connection, mgmt, settings, vhost, dlq_kind, jobs_kind, step, via, prefetch):
    # Given 3,000 dead letters of "jobs", one in ``step`` a timeout, with a classic or a
    # quorum DLQ and job queue
    await declare(connection, vhost, QueueSpec("jobs", max_priority=0, queue_type=jobs_kind),
                  delay_levels=1)
    if dlq_kind == "quorum":
        channel = await connection.channel()
        await channel.queue_delete("jobs.dlq")
        await channel.close()
        await declare_quorum(connection, "jobs.dlq")
    ids = await publish_dead_letters(connection, "jobs", 3000, headers=lambda i: dead_headers(
        "jobs", error_type="ValueError" if i % step else "TimeoutError"))
    matching = ids[::step]
    rest = [i for i in ids if i not in set(matching)]
    shovels: list[dict[str, object]] = []
    put_shovel = mgmt.put_shovel

    async def seen(vhost: str, name: str, value: dict[str, object]) -> None:
        shovels.append(value)
        await put_shovel(vhost, name, value)

    mgmt.put_shovel = seen
    dlq = DeadLetterQueue(connection, mgmt, settings, "jobs.dlq")
    # When the timeouts are replayed (the automatic choice of path)
    result = await dlq.replay(TIMEOUTS)
    # Then the broker moved them between classic queues (shallow prefetch on a DLQ taking
    # a quarter or more back), or when nothing goes back into the DLQ; else (a quorum
    # queue and dead letters held back: the shovel could stop early) message by message
    assert [s["src-prefetch-count"] for s in shovels] == ([prefetch] if prefetch else [])
    assert (result.via, result.replayed, result.outcome) == (via, len(matching), "ok")
    # And every timeout arrived once, in DLQ order; the rest stays, once, in its order
    assert await drain_ids(connection, "jobs") == matching
    assert [d.job_id for d in (await dlq.peek(0, 3000)).items] == rest


async def test_a_shovel_is_refused_for_a_filter_on_a_quorum_dlq(connection, mgmt, settings,
                                                                  vhost):
    await setup_jobs(connection, vhost)
    channel = await connection.channel()
    await channel.queue_delete("jobs.dlq")
    await channel.close()
    await declare_quorum(connection, "jobs.dlq")
    await publish_dead_letters(connection, "jobs", 10, headers=half_timeouts)
    dlq = DeadLetterQueue(connection, mgmt, settings, "jobs.dlq")
    with pytest.raises(ShovelNotApplicable, match="quorum queue on either side"):
        await dlq.replay(TIMEOUTS, via_shovel=True)
    assert await depth(connection, "jobs.dlq") == 10 and await depth(connection, "jobs") == 0


async def test_what_the_broker_cannot_judge_is_looked_at_one_by_one(
        connection, mgmt, settings, vhost):
    # Given timeouts and other errors, among them a timeout parked before the worker wrote
    # the plain headers, one at the replay limit, and one of a reason in another case
    await setup_jobs(connection, vhost)
    old, poison = 301, 600

    def headers(i: int) -> dict[str, object]:
        if i == old:
            return dead_headers("jobs", error_type="TimeoutError", plain=False)
        if i == poison:
            return dead_headers("jobs", error_type="TimeoutError", replay_count=3)
        return half_timeouts(i)

    ids = await publish_dead_letters(connection, "jobs", 1200, headers=headers)
    should = {ids[i] for i in range(0, 1200, 2) if i != poison} | {ids[old]}
    stays = [ids[i] for i in range(1200) if ids[i] not in should]
    dlq = DeadLetterQueue(connection, mgmt, settings, "jobs.dlq")
    # When the timeouts are replayed through the shovel
    dry = await dlq.replay(TIMEOUTS, dry_run=True)
    result = await dlq.replay(TIMEOUTS, via_shovel=True)
    # Then the broker moved what it could judge, the per-message replay the old one, and
    # the one at the limit stays, reported
    assert dry.replayed == result.replayed == len(should)
    assert result.count("replay-limit") == 1 and result.skipped[0].job_id == ids[poison]
    received = await drain_ids(connection, "jobs")
    assert sorted(received) == sorted(should)
    # And what stays keeps its order
    assert [d.job_id for d in (await dlq.peek(0, 1200)).items] == stays


async def test_a_filter_on_reason_and_the_automatic_choice(connection, mgmt, settings, vhost):
    await setup_jobs(connection, vhost)
    dlq = DeadLetterQueue(connection, mgmt, settings, "jobs.dlq")
    # A reason filter (any case) on 1,200 that mostly match: the shovel by itself
    await publish_dead_letters(connection, "jobs", 1200, headers=lambda i: dead_headers(
        "jobs", reason="timeout" if i % 4 else "failed"))
    result = await dlq.replay(DeadLetterFilter(reason="TIMEOUT"))
    assert (result.via, result.replayed) == ("shovel", 900)
    assert await depth(connection, "jobs.dlq") == 300
    # None matching at the head (the 300 left): the per-message replay reads the DLQ
    # without moving what it leaves
    await publish_dead_letters(connection, "jobs", 1200, headers=lambda i: dead_headers(
        "jobs", error_type="KeyError" if i % 10 == 0 else "ValueError"))
    result = await dlq.replay(DeadLetterFilter(error_type="KeyError"))
    assert (result.via, result.replayed) == ("messages", 120)
    # A few matching at the head (1 in 25 of a fresh DLQ): the shovel, which is still the
    # quicker there (bench.replay_share)
    await dlq.purge()
    await drain_ids(connection, "jobs")  # (what the two replays above sent)
    ids = await publish_dead_letters(connection, "jobs", 1000, headers=lambda i: dead_headers(
        "jobs", error_type="KeyError" if i % 25 == 0 else "ValueError"))
    result = await dlq.replay(DeadLetterFilter(error_type="KeyError"))
    assert (result.via, result.replayed) == ("shovel", 40)
    assert sorted(await drain_ids(connection, "jobs")) == sorted(ids[::25])
    assert await depth(connection, "jobs.dlq") == 960


@pytest.mark.slow
async def test_a_filtered_shovel_replay_cancelled_mid_way_loses_nothing(
        connection, mgmt, settings, vhost):
    # Given 20,000 dead letters, half of them timeouts
    await setup_jobs(connection, vhost)
    ids = await publish_dead_letters(connection, "jobs", 20_000, headers=half_timeouts,
                                     batch=1000)
    matching = {ids[i] for i in range(0, 20_000, 2)}
    dlq = DeadLetterQueue(connection, mgmt, settings, "jobs.dlq")
    # When the filtered replay is cancelled while the shovel moves them
    task = asyncio.create_task(dlq.replay(TIMEOUTS, via_shovel=True))
    await wait_until(lambda: _moving(connection), timeout=20, what="the shovel moving")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Then only timeouts reached "jobs", and every dead letter is in one of the two
    moved = await drain_ids(connection, "jobs")
    assert set(moved) <= matching and 0 < len(moved) < 10_000
    ledger = Ledger()
    ledger.sent.update(ids)
    ledger.confirmed.update(ids)
    ledger.record_received([*moved, *await drain_ids(connection, "jobs.dlq")])
    assert ledger.summary()["lost"] == 0
    assert await replay_exchanges(mgmt, vhost) == []


async def _moving(connection) -> bool:  # type: ignore[no-untyped-def]
    return await depth(connection, "jobs") > 0

"""Replay through a RabbitMQ shovel: loss-free, the poison-loop guard exact (applied by the
broker per message), foreign dead letters handed to the per-message replay, refused where it
does not fit, and nothing left behind."""

from __future__ import annotations

import asyncio

import aio_pika
import pytest

from queuewatch import envelope as env
from queuewatch.dlq import DeadLetterFilter, DeadLetterQueue
from queuewatch.dlq.shovel import ShovelNotApplicable, exchange_names
from tests.helpers import Ledger, depth, wait_until
from tests.integration.test_dlq_kinds import declare_quorum
from tests.integration.test_dlq_support import (
    dead_headers,
    drain_ids,
    publish_dead_letters,
    setup_jobs,
)


async def replay_exchanges(mgmt, vhost) -> list[str]:  # type: ignore[no-untyped-def]
    return [e["name"] for e in await mgmt.exchanges(vhost)
            if e["name"].startswith(env.REPLAY_EXCHANGE_PREFIX)]


async def test_replay_via_shovel_moves_everything_and_leaves_nothing_behind(
        connection, mgmt, settings, vhost):
    # Given 2,000 dead letters of "jobs"
    await setup_jobs(connection, vhost)
    ledger = Ledger()
    ids = await publish_dead_letters(connection, "jobs", 2000)
    ledger.sent.update(ids)
    ledger.confirmed.update(ids)
    dlq = DeadLetterQueue(connection, mgmt, settings, "jobs.dlq")
    # When they are replayed through a shovel
    result = await dlq.replay(via_shovel=True)
    # Then all of them are back in "jobs", none left behind, in their order
    assert (result.replayed, result.skipped, result.outcome) == (2000, (), "ok")
    assert await depth(connection, "jobs.dlq") == 0
    channel = await connection.channel()
    q = await channel.declare_queue("jobs", passive=True)
    first = await q.get(no_ack=True)
    await channel.close()
    received = [first.message_id, *await drain_ids(connection, "jobs")]
    ledger.record_received(received)
    assert ledger.summary()["lost"] == 0 and ledger.summary()["duplicated"] == 0
    assert received == ids
    # And they came through the replay exchange (the worker's sign of a replay)
    assert env.is_shovel_replay(first.exchange) and first.routing_key == "jobs"
    # And the shovel and its exchanges are gone; the audit log says how it was done
    assert not [s for s in await mgmt.shovel_status(vhost) if "replay" in str(s.get("name"))]
    assert await replay_exchanges(mgmt, vhost) == []
    assert last_audit_target(settings)["via"] == "shovel"


def last_audit_target(settings):  # type: ignore[no-untyped-def]
    from queuewatch.audit import AuditLog

    return AuditLog.from_settings(settings).read()[-1]["target"]


def foreign_headers() -> dict[str, object]:
    """A dead letter RabbitMQ parked (x-death), as for a plain-pika service on "jobs"."""
    return {"x-death": [{"queue": "jobs", "reason": "rejected", "count": 1, "exchange": "",
                         "routing-keys": ["jobs"]}]}


@pytest.mark.parametrize("dlq_kind", ["classic", "quorum"])
async def test_the_guard_is_exact_deep_in_the_dlq_and_foreign_letters_still_go_back(
        connection, mgmt, settings, vhost, dlq_kind):
    # Given 300 dead letters, in a classic or a quorum DLQ, where two far past the head
    # were replayed 3 times already (the limit) and one is a foreign dead letter without
    # queuewatch's headers (a quorum DLQ: held back apart although the head holds nothing
    # back, see dlq/held.py)
    await setup_jobs(connection, vhost)
    if dlq_kind == "quorum":
        channel = await connection.channel()
        await channel.queue_delete("jobs.dlq")
        await channel.close()
        await declare_quorum(connection, "jobs.dlq")
    poison, foreign = {150, 299}, 200

    def headers(i: int) -> dict[str, object]:
        if i == foreign:
            return foreign_headers()
        return dead_headers("jobs", replay_count=3 if i in poison else i % 3)

    ids = await publish_dead_letters(connection, "jobs", 300, headers=headers)
    dlq = DeadLetterQueue(connection, mgmt, settings, "jobs.dlq")
    sources: list[str] = []
    put_shovel = mgmt.put_shovel

    async def seen(vhost: str, name: str, value: dict[str, object]) -> None:
        sources.append(str(value["src-queue"]))
        await put_shovel(vhost, name, value)

    mgmt.put_shovel = seen
    # When the DLQ is replayed through a shovel
    result = await dlq.replay(via_shovel=True)
    # Then what was held back went straight back (classic), or through a queue of its own
    assert sources[0] == "jobs.dlq" and len(sources) == (2 if dlq_kind == "quorum" else 1)
    assert all(s.endswith(".held") for s in sources[1:])
    # And everything but the two at the limit went back to "jobs", the foreign one too
    assert result.replayed == 298 and result.count("replay-limit") == 2
    assert result.outcome == "partial"
    assert {s.job_id for s in result.skipped} == {ids[i] for i in poison}
    back = await drain_ids(connection, "jobs")
    assert sorted(back) == sorted(ids[i] for i in range(300) if i not in poison)
    # And the two stay in the DLQ (at its tail now), their count unchanged
    page = await dlq.peek()
    # (under load a quorum DLQ may get back copies whose ack the shovel lost as it ended:
    # at its head, redelivered, replayed too, and counted in doubt: duplicates, never losses;
    # seen about 1 run in 8 with two tests at once, also before 2026-12-02)
    extra = page.items[:-2]
    assert len(extra) <= result.in_doubt, (len(extra), result.in_doubt)
    assert all(d.redelivered and d.job_id in back for d in extra), extra
    assert [d.job_id for d in page.items[-2:]] == [ids[150], ids[299]]
    assert [d.replay_count for d in page.items[-2:]] == [3, 3]
    assert await replay_exchanges(mgmt, vhost) == []


async def test_dead_letters_of_another_queue_deep_in_the_dlq_go_back_to_their_own_queue(
        connection, mgmt, settings, vhost):
    # Given "jobs.dlq" holding, past its head, dead letters that died in "other" (imported
    # there, say)
    await setup_jobs(connection, vhost)
    await setup_jobs(connection, vhost, "other")
    ids = await publish_dead_letters(connection, "jobs", 400, headers=lambda i: dead_headers(
        "other" if i >= 200 and i % 2 else "jobs"))
    dlq = DeadLetterQueue(connection, mgmt, settings, "jobs.dlq")
    # When the DLQ is replayed through a shovel
    result = await dlq.replay(via_shovel=True)
    # Then each went back to the queue it died in: the shovel took only those of "jobs"
    assert (result.replayed, result.outcome, result.via) == (400, "ok", "shovel")
    others = {ids[i] for i in range(200, 400) if i % 2}
    assert set(await drain_ids(connection, "other")) == others
    assert set(await drain_ids(connection, "jobs")) == set(ids) - others


async def test_forced_shovel_replay_takes_the_poison_too(connection, mgmt, settings, vhost):
    await setup_jobs(connection, vhost)
    ids = await publish_dead_letters(connection, "jobs", 50, headers=lambda i: dead_headers(
        "jobs", replay_count=7 if i % 10 == 0 else 0))
    dlq = DeadLetterQueue(connection, mgmt, settings, "jobs.dlq")
    result = await dlq.replay(via_shovel=True, force=True)
    assert result.replayed == 50 and result.outcome == "ok"
    assert sorted(await drain_ids(connection, "jobs")) == sorted(ids)


async def test_a_shovel_replayed_job_gets_fresh_attempts_and_counts_toward_the_guard(
        connection, mgmt, settings, vhost):
    from queuewatch.topology import QueueSpec, RetryPolicy
    from queuewatch.worker import Job, Worker
    from tests.helpers import declare
    from tests.workers import running

    # Given a job queue whose jobs always fail, two attempts each, and one of its dead
    # letters that used up its attempts
    topo = await declare(connection, vhost, QueueSpec("jobs", retry=RetryPolicy(
        max_attempts=2, backoff_initial=1, jitter=0)), delay_levels=2)
    [job_id] = await publish_dead_letters(connection, "jobs", 1, headers=lambda i: dead_headers(
        "jobs", attempt=2))
    attempts: list[int] = []
    worker = Worker(settings, topo)

    @worker.job("jobs")
    async def fail(job: Job) -> None:
        attempts.append(job.attempt)
        raise RuntimeError("still broken")

    dlq = DeadLetterQueue(connection, mgmt, settings, "jobs.dlq")
    async with running(worker):
        for n in range(1, 4):
            # When it is replayed through a shovel and fails again
            assert (await dlq.replay(via_shovel=True, max_replays=3)).replayed == 1
            await wait_until(lambda: depth(connection, "jobs.dlq"), timeout=20,
                             what=f"dead again after replay {n}")
            # Then it ran with fresh attempts, and its dead letter counts the replay
            assert attempts[-2:] == [1, 2]
            [dead] = (await dlq.peek()).items
            assert dead.job_id == job_id and dead.replay_count == n
            assert dead.death.route is not None and dead.death.route.routing_key == "jobs"
        # And the (N+1)th replay is refused: it stays in the DLQ
        result = await dlq.replay(via_shovel=True, max_replays=3)
    assert result.replayed == 0 and result.count("replay-limit") == 1
    assert await depth(connection, "jobs.dlq") == 1 and len(attempts) == 6


async def test_shovel_is_refused_where_it_does_not_fit(connection, mgmt, settings, vhost):
    await setup_jobs(connection, vhost)
    await publish_dead_letters(connection, "jobs", 3)
    dlq = DeadLetterQueue(connection, mgmt, settings, "jobs.dlq")
    with pytest.raises(ShovelNotApplicable, match="no other filter"):
        await dlq.replay(DeadLetterFilter(text="x"), via_shovel=True)
    with pytest.raises(ShovelNotApplicable, match="no other filter"):
        await dlq.replay(via_shovel=True, rate=10)
    # a DLQ with a length limit: what is held back would re-enter it and could push out others
    ch = await connection.channel()
    await ch.declare_queue("capped.dlq", durable=True, arguments={"x-max-length": 10})
    capped = DeadLetterQueue(connection, mgmt, settings, "capped.dlq")
    with pytest.raises(ShovelNotApplicable, match="length limit"):
        await capped.replay(via_shovel=True)
    # only foreign dead letters at the head: the shovel would hold back every one
    await ch.declare_queue("foreign.dlq", durable=True)
    await ch.default_exchange.publish(
        aio_pika.Message(b"x", message_id="f1", headers=foreign_headers()), "foreign.dlq")
    await ch.close()
    with pytest.raises(ShovelNotApplicable, match="carries"):
        await DeadLetterQueue(connection, mgmt, settings, "foreign.dlq").replay(via_shovel=True)
    assert await depth(connection, "jobs.dlq") == 3
    assert await depth(connection, "foreign.dlq") == 1


async def test_cancelled_shovel_replay_loses_nothing_and_leftovers_are_swept(
        connection, mgmt, settings, vhost):
    # Given 20,000 dead letters, and the exchanges of a replay whose process was killed
    await setup_jobs(connection, vhost)
    ids = await publish_dead_letters(connection, "jobs", 20_000, batch=1000)
    ch = await connection.channel()
    stale, stale_held = exchange_names("queuewatch-replay-deadbeef0000")
    await ch.declare_exchange(stale_held, aio_pika.ExchangeType.FANOUT, durable=True)
    await ch.declare_exchange(stale, aio_pika.ExchangeType.HEADERS, durable=True)
    await ch.close()
    dlq = DeadLetterQueue(connection, mgmt, settings, "jobs.dlq")
    # When a shovel replay is cancelled while it runs
    task = asyncio.create_task(dlq.replay(via_shovel=True))
    await wait_until(lambda: _moving(connection), timeout=20, what="the shovel moving")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Then every dead letter is in "jobs" or still in the DLQ (a copy in both at worst)
    ledger = Ledger()
    ledger.sent.update(ids)
    ledger.confirmed.update(ids)
    moved = await drain_ids(connection, "jobs")
    ledger.record_received([*moved, *await drain_ids(connection, "jobs.dlq")])
    assert ledger.summary()["lost"] == 0
    assert 0 < len(moved) < 20_000, "the replay was not interrupted mid-way"
    # And no replay exchange remains: its own were dropped, the stale ones swept
    assert await replay_exchanges(mgmt, vhost) == []


async def _moving(connection) -> bool:  # type: ignore[no-untyped-def]
    return await depth(connection, "jobs") > 0


async def test_a_plain_bulk_replay_takes_the_shovel_by_itself_where_it_fits(
        connection, mgmt, settings, vhost):
    from dataclasses import replace

    await setup_jobs(connection, vhost)
    dlq = DeadLetterQueue(connection, mgmt, settings, "jobs.dlq")
    # A plain replay of 1,000+ dead letters: the shovel
    await publish_dead_letters(connection, "jobs", 1200)
    assert (await dlq.replay()).via == "shovel"
    # Fewer, or a filter the broker cannot apply, or asked not to: message by message
    await publish_dead_letters(connection, "jobs", 10)
    assert (await dlq.replay()).via == "messages"
    await publish_dead_letters(connection, "jobs", 1200)
    assert (await dlq.replay(DeadLetterFilter(text="job-"))).via == "messages"
    await publish_dead_letters(connection, "jobs", 1200)
    assert (await dlq.replay(via_shovel=False)).via == "messages"
    # No management API to create a shovel with: message by message, and since whether
    # 'jobs' drops its oldest messages past a length limit cannot be read, every one stays
    await publish_dead_letters(connection, "jobs", 1200)
    blind = replace(settings, management_url="http://127.0.0.1:9/")
    result = await DeadLetterQueue(connection, None, blind, "jobs.dlq").replay()
    assert (result.via, result.replayed, result.count("unchecked")) == ("messages", 0, 1200)
    assert await depth(connection, "jobs") == 3610 and await depth(connection, "jobs.dlq") == 1200


async def test_a_second_shovel_or_a_purge_on_a_dlq_being_shovelled_is_refused(connection, mgmt, settings, vhost):
    from queuewatch.broker.management import q
    from queuewatch.dlq.shovel import ReplayInProgress

    # Given a replay shovel still waiting on "jobs.dlq" (its replay was killed)
    await setup_jobs(connection, vhost)
    await publish_dead_letters(connection, "jobs", 5)
    uri = "amqp:///" + q(vhost)
    await mgmt.put_shovel(vhost, "queuewatch-replay-0123456789ab", {
        "src-protocol": "amqp091", "src-uri": uri, "src-queue": "jobs.dlq",
        "dest-protocol": "amqp091", "dest-uri": uri, "dest-queue": "jobs",
        "src-delete-after": 1_000_000})
    try:
        await wait_until(lambda: _is_empty(connection, "jobs.dlq"), what="the shovel moving")
        await publish_dead_letters(connection, "jobs", 5)
        dlq = DeadLetterQueue(connection, mgmt, settings, "jobs.dlq")
        # Then a shovel replay refuses to start a second one, naming it; and so do the
        # other actions that would leave it waiting for its share (or feed it)
        with pytest.raises(ReplayInProgress, match="queuewatch-replay-0123456789ab"):
            await dlq.replay(via_shovel=True)
        for action in (lambda: dlq.replay(via_shovel=False), dlq.purge,
                       lambda: dlq.delete(["job-x"])):
            with pytest.raises(ReplayInProgress):
                await action()
        # while reading is still allowed
        assert (await dlq.replay(dry_run=True)).dry_run
        # (why: the waiting shovel took the dead letters that arrived after it started too)
        await wait_until(lambda: _is(depth(connection, "jobs"), 10), what="all 10 moved")
    finally:
        await mgmt.delete_shovel(vhost, "queuewatch-replay-0123456789ab")


async def _is(value, expected) -> bool:  # type: ignore[no-untyped-def]
    return (await value) == expected


async def _is_empty(connection, queue: str) -> bool:  # type: ignore[no-untyped-def]
    return await depth(connection, queue) == 0

"""What a replay's shovel gives back as it ends (its last acks lost as it closes its
connection, seen under disk load: docs/dlq.md) is counted once the DLQ has noticed its
consumer gone, and the per-message pass after the shovel leaves it alone.

The shovel's lost acks cannot be caused on demand; a consumer holding the head of the DLQ
unacked and then closing its channel leaves the DLQ in the same state: those dead letters
back at its head, marked redelivered."""

from __future__ import annotations

import asyncio

import pytest

from queuewatch.dlq.replay import ReplayOptions, replay
from queuewatch.dlq.shovel import given_back
from tests.helpers import wait_until
from tests.integration.test_dlq_kinds import declare_quorum
from tests.integration.test_dlq_support import drain, drain_ids, publish_dead_letters, setup_jobs

HELD = 15


async def given_dead_letters(connection, vhost: str, kind: str) -> list[str]:  # type: ignore[no-untyped-def]
    """40 dead letters of "jobs" in its DLQ, a classic or a quorum queue."""
    await setup_jobs(connection, vhost)
    if kind == "quorum":
        channel = await connection.channel()
        await channel.queue_delete("jobs.dlq")
        await channel.close()
        await declare_quorum(connection, "jobs.dlq")
    return await publish_dead_letters(connection, "jobs", 40)


async def hold_head(connection, count: int):  # type: ignore[no-untyped-def]
    """A channel consuming the DLQ that holds its first ``count`` unacked."""
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=count)
    queue = await channel.declare_queue("jobs.dlq", passive=True)
    got: list[object] = []

    async def keep(message) -> None:  # type: ignore[no-untyped-def]
        got.append(message)

    await queue.consume(keep)
    await wait_until(lambda: len(got) == count, what=f"{count} delivered")
    return channel


@pytest.mark.parametrize("kind", ["classic", "quorum"])
async def test_given_back_waits_for_the_consumer_to_go_then_counts_the_redelivered_head(
        connection, vhost, kind):
    # Given 40 dead letters, the first 15 held unacked by a consumer
    await given_dead_letters(connection, vhost, kind)
    holder = await hold_head(connection, HELD)
    # When the count starts while that consumer is still there, and it goes half a second
    # later (as a shovel's consumer goes a moment after its definition)
    counting = asyncio.create_task(given_back(connection, "jobs.dlq", 100))
    await asyncio.sleep(0.5)
    assert not counting.done()
    await holder.close()
    # Then the 15 it gave back are counted, not the 25 never delivered
    assert await asyncio.wait_for(counting, 10) == HELD


@pytest.mark.parametrize("kind", ["classic", "quorum"])
async def test_the_pass_after_the_shovel_leaves_the_given_back_head_in_the_dlq(
        connection, vhost, kind):
    # Given 40 dead letters, the first 15 given back at the head
    ids = await given_dead_letters(connection, vhost, kind)
    await (await hold_head(connection, HELD)).close()
    head = await given_back(connection, "jobs.dlq", 100)
    assert head == HELD
    # When the per-message pass replays the DLQ, leaving that head alone
    result = await replay(connection, "jobs.dlq", ReplayOptions(leave_head=head))
    # Then the other 25 were replayed, once each, and the 15 stay in the DLQ, once each
    assert (result.scanned, result.matched, result.replayed) == (40, 40 - HELD, 40 - HELD)
    moved = await drain_ids(connection, "jobs")
    left = [str(m.message_id) for m in await drain(connection, "jobs.dlq")]
    assert sorted(moved) == sorted(ids[HELD:]) and len(moved) == len(ids) - HELD
    assert sorted(left) == sorted(ids[:HELD]) and len(left) == HELD

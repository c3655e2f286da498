"""What a replay's shovel gives back as it ends (its last acks lost as it closes its
connection, seen under disk load: docs/dlq.md) is counted once the DLQ has noticed its
consumer gone, and the per-message pass after the shovel leaves it alone.

The shovel's lost acks cannot be caused on demand; a consumer holding the head of the DLQ
unacked and then closing its channel leaves the DLQ in the same state: those dead letters
back at its head, marked redelivered."""

from __future__ import annotations

import asyncio

import pytest

from queuewatch.dlq.channel import once_fewer_consumers, queue_depth
from queuewatch.dlq.held import back_name, declare_held, held_queue, move_back
from queuewatch.dlq.model import REPLAY_SHOVEL_PREFIX
from queuewatch.dlq.peek import peek
from queuewatch.dlq.replay import ReplayOptions, replay
from queuewatch.dlq.shovel import given_back
from tests.helpers import depth, wait_until
from tests.integration.test_dlq_replay_readers import given_dead_letters as readers_given
from tests.integration.test_dlq_support import drain, drain_ids

HELD = 15


async def given_dead_letters(connection, vhost: str, kind: str) -> list[str]:  # type: ignore[no-untyped-def]
    """40 dead letters of "jobs" in its DLQ, a classic or a quorum queue."""
    return await readers_given(connection, vhost, kind, count=40)


async def hold_head(connection, count: int, name: str = "jobs.dlq"):  # type: ignore[no-untyped-def]
    """A channel consuming queue ``name`` that holds its first ``count`` unacked."""
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=count)
    queue = await channel.declare_queue(name, passive=True)
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


async def test_what_the_held_queue_gives_back_after_the_move_back_is_moved_again(
        connection, mgmt, vhost):
    # Given a replay's held queue with 30 dead letters of "jobs", the first 10 held unacked
    # by a consumer (as a shovel whose last acks were lost holds them)
    ids = await given_dead_letters(connection, vhost, "classic")
    shovel = REPLAY_SHOVEL_PREFIX + "givenback01"
    held = await declare_held(connection, shovel, "jobs.dlq")
    channel = await connection.channel()
    dlq = await channel.declare_queue("jobs.dlq", passive=True)
    for _ in range(30):  # the 30 first, moved from the DLQ into the held queue
        message = await dlq.get()
        await channel.default_exchange.publish(message, held)
        await message.ack()
    holder = await hold_head(connection, 10, held)
    # When they are moved back, and the consumer goes once the shovel moving back is gone
    moving = asyncio.create_task(move_back(connection, mgmt, vhost, shovel, "jobs.dlq"))
    await wait_until(_empty(connection, held), interval=0.02, what="20 moved")
    await wait_until(_gone(mgmt, vhost, back_name(shovel)), interval=0.02, what="shovel gone")
    await holder.close()
    # Then those 10 were moved too, by a second shovel: all 30 are at the DLQ's tail once,
    # and the held queue is gone
    assert await asyncio.wait_for(moving, 30) == 30
    left = [str(m.message_id) for m in await drain(connection, "jobs.dlq")]
    assert left[:10] == ids[30:] and sorted(left[10:]) == sorted(ids[:30]) and len(left) == 40
    assert held_queue(shovel) not in {q["name"] for q in await mgmt.queues(vhost)}
    await channel.close()


def _gone(mgmt, vhost: str, name: str):  # type: ignore[no-untyped-def]
    async def gone() -> bool:
        return not await mgmt.shovel_exists(vhost, name)
    return gone


def _empty(connection, queue: str):  # type: ignore[no-untyped-def]
    async def empty() -> bool:
        return await depth(connection, queue) == 0
    return empty


@pytest.mark.parametrize("kind", ["classic", "quorum"])
async def test_a_read_returns_once_what_it_read_is_back_in_the_dlq(connection, vhost, kind):
    # Given 40 dead letters, the first 15 given back once
    await given_dead_letters(connection, vhost, kind)
    await (await hold_head(connection, HELD)).close()
    await once_fewer_consumers(connection, "jobs.dlq")
    # When the whole DLQ is read, ten times, each time counted at once after
    # Then each count finds all 40 (without the wait for the read's consumer to go, a quorum
    # DLQ counted 0 after a read in 1 of 3 runs: none put back yet)
    for _ in range(10):
        assert len((await peek(connection, "jobs.dlq", 0, 100)).items) == 40
        assert await queue_depth(connection, "jobs.dlq") == 40

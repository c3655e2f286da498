"""Topology declared on the real broker: idempotence, mismatch diagnosis, and the
behaviour each queue argument promises (priorities, back-pressure, dead-lettering, delays)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time

import aio_pika
import pytest

from queuewatch.broker.declare import declare_topology
from queuewatch.envelope import H_TARGET
from queuewatch.errors import TopologyMismatch
from queuewatch.topology import (
    DELIVERY_EXCHANGE,
    QueueSpec,
    Topology,
    delay_entry_exchange,
    delay_queue_name,
    delay_routing_key,
    due_queue_name,
)
from tests.helpers import declare, depth, wait_until


async def broker_state(mgmt, vhost):  # type: ignore[no-untyped-def]
    queues = sorted(
        (q["name"], q["type"], q["durable"], sorted(q["arguments"].items()))
        for q in await mgmt.queues(vhost, columns=("name", "type", "durable", "arguments"))
    )
    exchanges = sorted(
        (e["name"], e["type"], e["durable"]) for e in await mgmt.exchanges(vhost)
    )
    bindings = sorted(
        (b["source"], b["destination"], b["destination_type"], b["routing_key"], sorted(b["arguments"].items()))
        for b in await mgmt.bindings(vhost)
    )
    return queues, exchanges, bindings


async def test_declare_twice_leaves_identical_state(connection, mgmt, vhost):
    # Given a topology with two queues
    topo = Topology(queues=(QueueSpec("a", max_length=5), QueueSpec("b", max_priority=0)), delay_levels=4)
    # When it is declared twice
    first = await declare_topology(connection, topo, vhost, mgmt)
    before = await broker_state(mgmt, vhost)
    second = await declare_topology(connection, topo, vhost, mgmt)
    after = await broker_state(mgmt, vhost)
    # Then the second declare created nothing and the broker state is the same
    assert set(first.created) == {"a", "a.dlq", "b", "b.dlq", due_queue_name("a"), due_queue_name("b"),
                                  *(delay_queue_name(n) for n in range(4))}
    assert second.created == [] and set(second.unchanged) == set(first.created)
    assert before == after
    assert any(q[0] == "a" and ("x-max-length", 5) in q[3] for q in after[0])


async def test_mismatch_names_every_differing_argument(connection, mgmt, vhost):
    await declare(connection, vhost, QueueSpec("jobs", max_length=10, max_priority=5))
    changed = Topology(queues=(QueueSpec("jobs", max_length=20, max_priority=10),), delay_levels=8)
    with pytest.raises(TopologyMismatch) as info:
        await declare_topology(connection, changed, vhost, mgmt)
    err = info.value
    assert err.queue == "jobs"
    assert {(d.argument, d.current, d.requested) for d in err.diffs} == {
        ("x-max-length", 10, 20), ("x-max-priority", 5, 10),
    }
    assert "PRECONDITION_FAILED" not in str(err) and "jobs" in str(err)


async def test_mismatch_without_management_is_still_typed(connection, vhost):
    await declare(connection, vhost, QueueSpec("jobs", max_length=10))
    changed = Topology(queues=(QueueSpec("jobs", max_length=11),), delay_levels=8)
    with pytest.raises(TopologyMismatch) as info:
        await declare_topology(connection, changed, vhost, management=None)
    assert info.value.queue == "jobs"
    assert info.value.diffs[0].argument == "x-max-length"


async def test_priorities_consumed_highest_first(connection, vhost):
    await declare(connection, vhost, QueueSpec("prio", max_priority=10))
    channel = await connection.channel(publisher_confirms=True)
    priorities = [1, 5, 0, 9, 3, 9, 7, 2, 10, 4] * 5
    for i, p in enumerate(priorities):
        await channel.default_exchange.publish(
            aio_pika.Message(str(i).encode(), priority=p, delivery_mode=2), routing_key="prio"
        )
    queue = await channel.get_queue("prio")
    got = []
    while (msg := await queue.get(no_ack=True, fail=False)) is not None:
        got.append(msg.priority)
    assert got == sorted(priorities, reverse=True)


async def test_back_pressure_nacks_exactly_the_overflow(connection, vhost):
    cap = 20
    await declare(connection, vhost, QueueSpec("capped", max_length=cap))
    channel = await connection.channel(publisher_confirms=True)
    results = await asyncio.gather(
        *(
            channel.default_exchange.publish(aio_pika.Message(b"x", delivery_mode=2), routing_key="capped")
            for _ in range(2 * cap)
        ),
        return_exceptions=True,
    )
    nacked = [r for r in results if isinstance(r, aio_pika.exceptions.DeliveryError)]
    assert len(nacked) == cap
    assert await depth(connection, "capped") == cap


async def test_rejected_message_lands_in_dlq(connection, vhost):
    await declare(connection, vhost, QueueSpec("work"))
    channel = await connection.channel(publisher_confirms=True)
    await channel.default_exchange.publish(aio_pika.Message(b"bad", message_id="m1"), routing_key="work")
    msg = await (await channel.get_queue("work")).get()
    await msg.reject(requeue=False)
    await wait_until(lambda: depth(connection, "work.dlq"), what="dead letter in work.dlq")
    dead = await (await channel.get_queue("work.dlq")).get(no_ack=True)
    assert dead.message_id == "m1" and dead.body == b"bad"
    assert dead.headers["x-death"][0]["reason"] == "rejected"


def settle_timeout() -> float:
    """The broker's retry period for rejected at-least-once dead letters, in seconds."""
    try:
        out = subprocess.run(
            ["rabbitmqctl", "eval", "application:get_env(rabbit, dead_letter_worker_publisher_confirm_timeout)."],
            capture_output=True, text=True, timeout=30,
        ).stdout
        match = re.search(r"\{ok,(\d+)\}", out)
    except (OSError, subprocess.TimeoutExpired):
        match = None
    return int(match[1]) / 1000 if match else 180.0


async def _publish_delayed(channel, levels, seconds, target, body):  # type: ignore[no-untyped-def]
    exchange = await channel.get_exchange(delay_entry_exchange(levels))
    await exchange.publish(
        aio_pika.Message(body, headers={H_TARGET: target}, delivery_mode=2),
        routing_key=delay_routing_key(seconds, levels),
        mandatory=True,
    )


@pytest.mark.parametrize("seconds", [1, 2, 3])
async def test_delay_level_returns_message_after_ttl(connection, vhost, seconds):
    levels = 4
    await declare(connection, vhost, QueueSpec("later"), delay_levels=levels)
    channel = await connection.channel(publisher_confirms=True)
    start = time.monotonic()
    await _publish_delayed(channel, levels, seconds, "later", b"hello")
    queue = await channel.get_queue("later")
    msg = None
    while msg is None and time.monotonic() - start < seconds + 5:
        msg = await queue.get(no_ack=True, fail=False)
        if msg is None:
            await asyncio.sleep(0.05)
    elapsed = time.monotonic() - start
    assert msg is not None and msg.body == b"hello"
    assert seconds - 0.05 <= elapsed <= seconds + 1.0, elapsed


@pytest.mark.slow
@pytest.mark.timeout(400)  # one settle period (180 s on 3.10) plus margin
async def test_delayed_message_waits_while_job_queue_is_full(connection, vhost):
    # Given a full job queue (reject-publish) and a message in a delay level
    levels = 2
    await declare(connection, vhost, QueueSpec("tight", max_length=1), delay_levels=levels)
    channel = await connection.channel(publisher_confirms=True)
    await channel.default_exchange.publish(aio_pika.Message(b"filler"), routing_key="tight")
    await _publish_delayed(channel, levels, 1, "tight", b"delayed")
    # When its TTL expires while the queue is full, it cannot be delivered...
    await asyncio.sleep(2.5)
    assert await depth(connection, "tight") == 1
    # ...and once there is room it arrives: at-least-once dead-lettering held it
    queue = await channel.get_queue("tight")
    filler = await queue.get(no_ack=True)
    assert filler.body == b"filler"
    bodies: list[bytes] = []

    async def arrived() -> bool:
        m = await queue.get(no_ack=True, fail=False)
        if m is not None:
            bodies.append(m.body)
        return bool(bodies)

    # RabbitMQ retries a rejected dead-letter every dead_letter_worker_publisher_confirm_timeout
    # (3 minutes on 3.10), so allow for one full period.
    await wait_until(arrived, timeout=settle_timeout() + 30, interval=0.5, what="the held delayed message")
    assert bodies == [b"delayed"]


async def test_a_topology_declared_before_due_queues_delivers_a_delayed_job_once(connection, vhost):
    # Given a job queue bound straight to the delivery exchange, as topologies declared
    # before due queues were
    levels = 2
    await declare(connection, vhost, QueueSpec("legacy"), delay_levels=levels)
    channel = await connection.channel(publisher_confirms=True)
    queue = await channel.get_queue("legacy")
    await queue.bind(DELIVERY_EXCHANGE, arguments={"x-match": "all", H_TARGET: "legacy"})
    # When the topology is declared again (what any worker or producer start does)
    await declare(connection, vhost, QueueSpec("legacy"), delay_levels=levels)
    # Then a delayed job reaches its queue once, through its due queue
    await _publish_delayed(channel, levels, 1, "legacy", b"once")
    await wait_until(lambda: _depth_is(connection, "legacy", 1), timeout=15, what="the delayed job")
    await asyncio.sleep(2)
    assert await depth(connection, "legacy") == 1
    assert await depth(connection, due_queue_name("legacy")) == 0


async def _depth_is(connection, queue: str, n: int) -> bool:
    return await depth(connection, queue) == n

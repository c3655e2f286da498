"""Quorum job queues as a first-class choice: what `queue_type = "quorum"` declares, the
broker's delivery limit for poison messages (dead-lettered at-least-once into a quorum
`Q.dlq`), and the worker's retry / dead-letter cycle on them."""

from __future__ import annotations

import asyncio

import aio_pika
import pytest

from queuewatch.errors import ConfigError
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec, RetryPolicy, topology_from_mapping
from queuewatch.worker import Job, Worker
from tests.helpers import declare, depth, drain, wait_until

QUORUM = {"queue_type": "quorum", "max_priority": 0}


async def test_declares_a_quorum_queue_and_a_quorum_dlq(connection, settings, vhost, mgmt):
    await declare(connection, vhost, QueueSpec("orders", **QUORUM, delivery_limit=3))  # type: ignore[arg-type]
    q = await mgmt.queue(vhost, "orders")
    dlq = await mgmt.queue(vhost, "orders.dlq")
    assert q is not None and dlq is not None
    assert q["type"] == "quorum" and dlq["type"] == "quorum"
    args = q["arguments"]
    assert args["x-delivery-limit"] == 3
    assert args["x-dead-letter-strategy"] == "at-least-once"
    assert args["x-overflow"] == "reject-publish"  # required by at-least-once dead-lettering
    assert args["x-dead-letter-routing-key"] == "orders.dlq"


async def test_a_poison_message_is_dead_lettered_by_the_delivery_limit(connection, settings, vhost):
    # Given a quorum job queue with a delivery limit of 2
    await declare(connection, vhost, QueueSpec("orders", **QUORUM, delivery_limit=2))  # type: ignore[arg-type]
    channel = await connection.channel()
    await channel.default_exchange.publish(
        aio_pika.Message(b'{"x": 1}', message_id="poison-1", delivery_mode=2), "orders")
    queue = await channel.get_queue("orders")
    # When consumers keep dying with it (returned unacked again and again)
    for _ in range(6):
        msg = await queue.get(fail=False, timeout=5)
        if msg is None:
            break
        await msg.nack(requeue=True)
    # Then the broker parks it in the quorum DLQ instead of looping forever
    parked = await drain(connection, "orders.dlq", 1, timeout=15)
    assert [m.message_id for m in parked] == ["poison-1"]
    assert await depth(connection, "orders") == 0
    await channel.close()


async def test_worker_retries_and_dead_letters_on_a_quorum_queue(connection, settings, vhost):
    spec = QueueSpec("orders", **QUORUM,  # type: ignore[arg-type]
                     retry=RetryPolicy(max_attempts=2, backoff_initial=1, jitter=0))
    topo = await declare(connection, vhost, spec)
    runs: list[int] = []
    worker = Worker(settings, topo, idempotency=False, metrics=False)

    @worker.job("orders")
    async def handle(job: Job) -> None:
        runs.append(job.attempt)
        if job.payload["fail"]:
            raise RuntimeError("boom")

    task = asyncio.create_task(worker.run())
    async with AsyncProducer(settings, topo) as producer:
        await producer.publish("orders", {"fail": True}, job_id="bad")
        await producer.publish("orders", {"fail": False}, job_id="good")
    await wait_until(lambda: sorted(runs) == [1, 1, 2], timeout=20, what="two attempts and one success")
    dead = await drain(connection, "orders.dlq", 1, timeout=15)
    worker.stop()
    await asyncio.wait_for(task, 30)
    assert [m.message_id for m in dead] == ["bad"]
    assert (dead[0].headers or {}).get("x-qw-error-type") == "RuntimeError"


@pytest.mark.parametrize(("raw", "says"), [
    ({"name": "q", "queue_type": "quorum"}, "quorum queues have no x-max-priority"),
    ({"name": "q", "delivery_limit": 3}, "delivery_limit needs queue_type = 'quorum'"),
    ({"name": "q", "queue_type": "quorum", "max_priority": 0, "delivery_limit": 0},
     "delivery_limit must be a whole number >= 1"),
])
def test_quorum_settings_mistakes_are_one_clear_line(raw, says):
    with pytest.raises(ConfigError) as info:
        topology_from_mapping({"queue": [raw]}, "topology.toml")
    assert says in str(info.value) and "\n" not in str(info.value)

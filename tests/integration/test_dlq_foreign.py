"""Dead letters from queues queuewatch did not create: RabbitMQ's x-death tells the route."""

from __future__ import annotations

import aio_pika

from queuewatch.dlq import DeadLetterQueue
from tests.helpers import depth, wait_until
from tests.integration.test_dlq_support import drain_ids


async def test_foreign_dead_letter_goes_back_via_x_death(connection, settings, vhost):
    # Given a plain-pika style service: exchange "tasks" -> queue "emails" with a DLX that
    # parks rejected messages in "emails.dead"
    ch = await connection.channel()
    tasks = await ch.declare_exchange("tasks", aio_pika.ExchangeType.DIRECT, durable=True)
    dlx = await ch.declare_exchange("dlx", aio_pika.ExchangeType.FANOUT, durable=True)
    dead = await ch.declare_queue("emails.dead", durable=True)
    await dead.bind(dlx)
    emails = await ch.declare_queue(
        "emails", durable=True, arguments={"x-dead-letter-exchange": "dlx"})
    await emails.bind(tasks, routing_key="send_email")
    # and a consumer that rejects two messages without requeue
    for n in range(2):
        await tasks.publish(aio_pika.Message(f"email {n}".encode(), message_id=f"m{n}",
                                             headers={"id": f"celery-{n}"}), "send_email")
    for _ in range(2):
        msg = await emails.get(timeout=5)
        await msg.reject(requeue=False)
    await wait_until(lambda: depth(connection, "emails.dead"), what="dead letters")
    await wait_until(lambda: _is(depth(connection, "emails.dead"), 2), what="2 dead letters")
    await ch.close()
    dlq = DeadLetterQueue(connection, None, settings, "emails.dead")
    # When we inspect them
    page = await dlq.peek()
    d = page.items[0].death
    # Then the death info comes from x-death
    assert (d.source, d.reason, d.original_exchange, d.original_routing_key, d.original_queue) == (
        "x-death", "rejected", "tasks", "send_email", "emails")
    assert d.attempts == 1 and d.first_death_ms and page.items[0].job_id == "m0"
    # When we replay them
    result = await dlq.replay()
    # Then they went back through exchange "tasks" with their routing key into "emails"
    assert result.replayed == 2 and result.outcome == "ok"
    assert await drain_ids(connection, "emails") == ["m0", "m1"]
    assert await depth(connection, "emails.dead") == 0


async def _is(value, expected) -> bool:  # type: ignore[no-untyped-def]
    return (await value) == expected


async def test_default_exchange_dead_letter_goes_back_by_queue_name(connection, settings, vhost):
    # Given a queue fed through the default exchange, dead-lettering to a DLX queue
    ch = await connection.channel()
    dlx = await ch.declare_exchange("dlx", aio_pika.ExchangeType.FANOUT)
    parked = await ch.declare_queue("work.parked")
    await parked.bind(dlx)
    work = await ch.declare_queue("work", arguments={"x-dead-letter-exchange": "dlx"})
    await ch.default_exchange.publish(aio_pika.Message(b"x", message_id="w1"), "work")
    msg = await work.get(timeout=5)
    await msg.nack(requeue=False)
    await wait_until(lambda: _is(depth(connection, "work.parked"), 1), what="parked")
    await ch.close()
    result = await DeadLetterQueue(connection, None, settings, "work.parked").replay()
    assert result.replayed == 1
    assert await drain_ids(connection, "work") == ["w1"]

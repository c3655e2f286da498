"""Messages a foreign client published (no queuewatch envelope: no message id, no headers,
sometimes no properties at all) run, fail and dead-letter like any job, and their own
properties survive into the dead letter: the worker reads them through its light
:class:`~queuewatch.broker.delivery.Delivery`, on a classic and a quorum queue."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import aio_pika
import pytest

from queuewatch import envelope
from queuewatch.topology import QueueSpec, RetryPolicy
from queuewatch.worker import Job, Worker
from tests.helpers import declare, depth, wait_until
from tests.workers import dead_letters, running


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_foreign_messages_run_fail_and_keep_their_properties(connection, settings, vhost,
                                                                   queue_type):
    # Given a foreign client's messages: one bare, one with its own properties that fails
    quorum = queue_type == "quorum"
    spec = QueueSpec("jobs", queue_type=queue_type, max_priority=0 if quorum else 10,
                     retry=RetryPolicy(max_attempts=1))
    topo = await declare(connection, vhost, spec, delay_levels=1)
    seen: Counter[str] = Counter()
    worker = Worker(settings, topo)

    @worker.job("jobs")
    async def handle(job: Job) -> None:
        seen[repr(job.payload)] += 1  # (no content type: the body as bytes)
        if job.payload == {"fail": True}:
            raise RuntimeError("foreign job failed")

    stamp = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
    channel = await connection.channel()
    await channel.default_exchange.publish(aio_pika.Message(b'{"bare": 1}'), routing_key="jobs")
    await channel.default_exchange.publish(aio_pika.Message(
        b'{"fail": true}', content_type="application/json", priority=0 if quorum else 3,
        correlation_id="corr-9", app_id="legacy-billing", timestamp=stamp, type="invoice",
        headers={"tenant": "acme"}), routing_key="jobs")
    # When a worker consumes them
    async with running(worker):
        await wait_until(lambda: sum(seen.values()) == 2, timeout=15, what="both ran")
        [dead] = await dead_letters(connection, "jobs", 1)
    # Then each ran once; the failed one is in the DLQ with its own properties and headers
    assert seen == Counter({repr(b'{"bare": 1}'): 1, repr({"fail": True}): 1})
    assert (dead.correlation_id, dead.app_id, dead.type) == ("corr-9", "legacy-billing", "invoice")
    assert dead.timestamp == stamp and dead.priority == (0 if quorum else 3)
    assert dead.headers["tenant"] == "acme"
    assert dead.headers[envelope.H_ERROR_MESSAGE] == "foreign job failed"
    # and nothing came back to the queue
    assert await depth(connection, "jobs") == 0
    await channel.close()

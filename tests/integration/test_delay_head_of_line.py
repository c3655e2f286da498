"""A full capped queue holds back its own delayed jobs only.

The delay levels are shared by every job queue, and RabbitMQ's at-least-once dead-lettering
retries a refused message while holding a window of 32 (``dead_letter_worker_consumer_prefetch``).
When the levels dead-lettered straight into a capped job queue (``x-overflow:
reject-publish``) that was full, past 32 jobs due for it every other queue's delayed jobs and
retries waited behind them (found by running the demo: its orders burst fills the orders cap,
and the emails retries were minutes late). Each job queue now has its own due queue
(``queuewatch.due.Q``, TTL 0, at-least-once into ``Q``): the levels always deliver, and only
the full queue's due queue waits.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from queuewatch.broker.management import ManagementClient
from queuewatch.monitor import Monitor
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec, delay_queue_name, due_queue_name
from tests.helpers import declare, depth

pytestmark = pytest.mark.slow


async def _arrives_within(connection, queue: str, seconds: float) -> float:
    start = time.monotonic()
    while await depth(connection, queue) == 0:
        assert time.monotonic() - start < seconds, f"the delayed job for {queue} never arrived"
        await asyncio.sleep(0.25)
    return time.monotonic() - start


@pytest.mark.parametrize("capped_type", ["classic", "quorum"])
async def test_a_full_capped_queue_does_not_hold_back_other_queues_delayed_jobs(
        connection, settings, vhost, capped_type):
    levels = 4
    topo = await declare(connection, vhost, QueueSpec("orders", max_length=2, queue_type=capped_type,
                                   max_priority=0 if capped_type == "quorum" else 10),
                         QueueSpec("emails"), QueueSpec("audit", queue_type="quorum", max_priority=0),
                         delay_levels=levels)
    async with AsyncProducer(settings, topo) as producer:
        # Given the capped queue full, and 40 delayed jobs due for it in 2 s (more than the
        # dead-letter worker's window of 32)
        for i in range(2):
            await producer.publish("orders", {}, job_id=f"order-{i}")
        for i in range(40):
            await producer.publish("orders", {}, delay=2, job_id=f"late-order-{i}")
        # When jobs for two other queues (classic, quorum) are delayed by 3 s
        await producer.publish("emails", {}, delay=3, job_id="email-1")
        await producer.publish("audit", {}, delay=3, job_id="audit-1")
    # Then both are there within a few seconds of their due time
    await _arrives_within(connection, "emails", 15)
    await _arrives_within(connection, "audit", 15)
    # And the full queue's own jobs wait in its due queue (held by its dead-letter worker:
    # ``messages_dlx``, not ready), none in the shared levels; every job is accounted for
    # (a quorum queue's reject-publish is approximate: a burst of dead-letters overshoots it
    # by a few: 5 over in one run)
    async with ManagementClient(settings) as mgmt:
        deadline = time.monotonic() + 20  # the management API's statistics lag by 5 s
        while True:
            due = await mgmt.queue(vhost, due_queue_name("orders")) or {}
            levels_held = [(await mgmt.queue(vhost, delay_queue_name(n)) or {}).get("messages")
                           for n in range(levels)]
            in_orders = await depth(connection, "orders")
            if due.get("messages") == 42 - in_orders and levels_held == [0] * levels:
                break
            assert time.monotonic() < deadline, (in_orders, due.get("messages"), levels_held)
            await asyncio.sleep(1)
        # And the monitor shows them as waiting in the due queue (the broker counts them as
        # held by its dead-letter worker, not ready)
        snap = await Monitor(mgmt, settings).poll()
        shown = {q.name: q.ready for q in snap.queues}
        assert shown[due_queue_name("orders")] == due.get("messages")
    if capped_type == "classic":
        assert in_orders == 2
    else:
        assert 2 <= in_orders <= 12

"""Snapshot numbers against the management API and the truth, on a real broker.

Management stats refresh every 5 s (the broker's collect_statistics_interval), so the
scenarios run side by side in one vhost and share the same few stats cycles.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from datetime import UTC, datetime

import aio_pika
import pytest

from queuewatch.broker.management import ManagementClient
from queuewatch.monitor import Monitor, snapshot_to_json
from queuewatch.monitor.queues import MONITOR_QUEUE_COLUMNS
from queuewatch.topology import QueueSpec
from tests.helpers import declare, wait_until

pytestmark = pytest.mark.timeout(90)


async def publish(channel: aio_pika.abc.AbstractChannel, queue: str, n: int,
                  stamp: datetime | None = None) -> None:
    for i in range(n):
        await channel.default_exchange.publish(
            aio_pika.Message(f"m{i}".encode(), timestamp=stamp), routing_key=queue
        )


async def test_snapshot_matches_management_api_and_truth(connection, mgmt: ManagementClient,
                                                         settings, vhost):
    # Given: "orders" (capped at 100) with 30 timestamped messages, 5 of them held unacked by a
    # consumer; "foreign" (plain queue, no timestamps, as a pika/Celery service would publish);
    # "growing" with a steady publisher and no consumer; "draining" with a backlog and a
    # consumer acking faster than anyone publishes.
    await declare(connection, vhost, QueueSpec("orders", max_length=100, max_priority=None),
                  QueueSpec("draining", max_priority=None), mgmt=mgmt)
    ch = await connection.channel()
    await ch.declare_queue("foreign", durable=True)
    await ch.declare_queue("growing", durable=True)
    first_published = time.time()
    await publish(ch, "orders", 30, stamp=datetime.fromtimestamp(first_published, UTC))
    await publish(ch, "foreign", 3)
    await publish(ch, "draining", 2000)
    holder = await connection.channel()
    await holder.set_qos(prefetch_count=5)
    held = await holder.declare_queue("orders", passive=True)

    async def hold(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        """Never acks: the first 5 stay unacked."""

    await held.consume(hold)

    drainer = await connection.channel()
    await drainer.set_qos(prefetch_count=1)  # one at a time: about 50 acks/s

    async def slow_ack(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await asyncio.sleep(0.02)
        await message.ack()

    await (await drainer.declare_queue("draining", passive=True)).consume(slow_ack)

    async def keep_publishing() -> None:
        while True:
            await publish(ch, "growing", 2)
            await asyncio.sleep(0.05)

    feeder = asyncio.create_task(keep_publishing())
    try:
        async def stats_show_everything() -> bool:
            o = await mgmt.queue(vhost, "orders") or {}
            g = await mgmt.queue(vhost, "growing") or {}
            d = await mgmt.queue(vhost, "draining") or {}
            return (o.get("messages_ready") == 25 and o.get("messages_unacknowledged") == 5
                    and _rate(g, "publish") > 0 and _rate(d, "ack") > 0
                    # queue counts and channel rates arrive in separate stats events
                    and (g.get("messages_ready") or 0) > 0 and (d.get("messages_ready") or 0) > 0)

        await wait_until(stats_show_everything, timeout=30, interval=0.5,
                         what="management stats to show the scenario")

        # When the monitor polls, and the raw API is asked for the same fields right after
        monitor = Monitor(mgmt, settings)
        snap = await monitor.poll()
        now = time.time()
        raw = {r["name"]: r for r in await mgmt.queues(vhost, columns=MONITOR_QUEUE_COLUMNS)}
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder

    # Then depth, consumers and fill equal what the management API says
    orders = snap.queue("orders")
    assert orders is not None
    assert (orders.ready, orders.unacked, orders.consumers) == (25, 5, 1)
    r = raw["orders"]
    assert (orders.ready, orders.unacked, orders.consumers) == (
        r["messages_ready"], r["messages_unacknowledged"], r["consumers"])
    # (fill counts the 25 ready ones only: x-max-length ignores the 5 unacked)
    assert orders.max_length == 100 and orders.fill == pytest.approx(0.25)
    assert snapshot_to_json(snap)["queues"][[q.name for q in snap.queues].index("orders")][
        "fill_ratio"] == pytest.approx(0.25)
    for name in ("foreign", "orders.dlq"):
        q = snap.queue(name)
        assert q is not None and q.ready == raw[name]["messages_ready"]
    # the oldest-message age is within 2 s of the truth (AMQP timestamps are whole seconds)
    assert orders.oldest_age_known and orders.oldest_age is not None
    assert abs(orders.oldest_age - (now - first_published)) <= 2.0
    # a queue nobody stamped says "unknown", never 0
    foreign = snap.queue("foreign")
    assert foreign is not None and foreign.ready == 3
    assert foreign.oldest_age is None and not foreign.oldest_age_known
    doc = {q["name"]: q for q in snapshot_to_json(snap)["queues"]}
    assert doc["foreign"]["oldest_age_text"] == "unknown"
    # drain ETA: "never" while growing, finite and positive while draining
    growing, draining = snap.queue("growing"), snap.queue("draining")
    assert growing is not None and draining is not None
    assert growing.drain_eta is not None and math.isinf(growing.drain_eta)
    assert growing.net_rate > 0
    assert draining.drain_eta is not None and 0 < draining.drain_eta < math.inf
    assert draining.net_rate < 0
    # orders has its DLQ linked; the DLQ growth is unknown until a second poll
    assert orders.dlq == "orders.dlq" and orders.dlq_depth == 0 and orders.dlq_growth is None
    # history keeps one point per poll
    await monitor.poll()
    assert len(monitor.history.get("orders")) == 2
    # ...but not for a face that never draws it (the exporter, commands): same snapshot
    bare = Monitor(mgmt, settings, keep_history=False)
    await bare.poll()
    again = await bare.poll()
    assert again.queue("orders") is not None and len(bare.history.get("orders")) == 0


async def test_dlq_growth_between_polls(connection, mgmt: ManagementClient, settings, vhost):
    # Given a job queue with its DLQ, polled once while the DLQ is empty
    await declare(connection, vhost, QueueSpec("jobs", max_priority=None), mgmt=mgmt)
    monitor = Monitor(mgmt, settings)
    first = await monitor.poll()
    assert first.queue("jobs").dlq_growth is None  # type: ignore[union-attr]
    # When three messages are dead-lettered into it
    ch = await connection.channel()
    await publish(ch, "jobs.dlq", 3)
    await wait_until(lambda: _ready(mgmt, vhost, "jobs.dlq", 3), timeout=15, interval=0.5,
                     what="DLQ depth in the stats")
    second = await monitor.poll()
    # Then the next snapshot reports the growth and raises a dlq_growth alert
    jobs = second.queue("jobs")
    assert jobs is not None and jobs.dlq_depth == 3 and jobs.dlq_growth == 3
    assert [a.kind for a in second.alerts if a.target == "jobs.dlq"] == ["dlq_growth"]
    assert "jobs.dlq" not in second.orphaned_queues


async def _ready(mgmt: ManagementClient, vhost: str, name: str, n: int) -> bool:
    q = await mgmt.queue(vhost, name) or {}
    return q.get("messages_ready") == n


def _rate(q: dict, key: str) -> float:  # type: ignore[type-arg]
    return float((q.get("message_stats") or {}).get(f"{key}_details", {}).get("rate", 0))


async def test_queue_sweep_pages_without_gaps_or_duplicates(connection, mgmt, vhost):
    # Given 7 queues and pages of 2 (4 pages, fetched a few at a time)
    from queuewatch.monitor.fetch import fetch_queues

    ch = await connection.channel()
    for i in range(7):
        await ch.declare_queue(f"p{i}", durable=True)
    # When swept
    items = await fetch_queues(mgmt, vhost, ("name", "vhost"), page_size=2, concurrency=2)
    # Then every queue is there exactly once
    assert sorted(i["name"] for i in items) == [f"p{i}" for i in range(7)]


async def test_unknown_vhost_is_a_clear_error(mgmt, settings):
    from queuewatch.errors import NotFound

    with pytest.raises(NotFound, match="does not exist"):
        await Monitor(mgmt, settings.with_vhost("qwt-no-such-vhost-zz")).poll()

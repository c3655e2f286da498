"""Producers on the real broker: properties, priorities, delays, back-pressure, unroutable."""

from __future__ import annotations

import asyncio
import time

import pytest

from queuewatch import envelope
from queuewatch.errors import BackPressure, Unroutable
from queuewatch.producer import AsyncProducer, Producer
from queuewatch.topology import QueueSpec
from tests.helpers import Ledger, declare, depth, drain, wait_until


async def test_async_publish_sets_every_property(connection, settings, vhost):
    topo = await declare(connection, vhost, QueueSpec("jobs"))
    async with AsyncProducer(settings, topo) as producer:
        result = await producer.publish("jobs", {"a": 1}, priority=3, job_id="j-1",
                                        idempotency_key="k-1", headers={"tenant": "x"})
    assert result.job_id == "j-1" and result.queue == "jobs"
    [msg] = await drain(connection, "jobs", 1)
    assert msg.message_id == "j-1" and msg.priority == 3 and msg.delivery_mode == 2
    assert msg.content_type == envelope.JSON and msg.body == b'{"a":1}'
    assert msg.timestamp is not None and abs(msg.timestamp.timestamp() - time.time()) < 5
    assert msg.headers[envelope.H_ATTEMPT] == 1 and msg.headers["tenant"] == "x"
    assert abs(msg.headers[envelope.H_PUBLISHED_MS] - envelope.now_ms()) < 5000
    assert envelope.idempotency_key_of(msg.message_id, msg.headers) == "k-1"


async def test_bytes_payload_and_generated_job_id(connection, settings, vhost):
    topo = await declare(connection, vhost, QueueSpec("jobs"))
    async with AsyncProducer(settings, topo) as producer:
        r1 = await producer.publish("jobs", b"\x00raw")
        r2 = await producer.publish("jobs", b"\x00raw")
    assert r1.job_id != r2.job_id and len(r1.job_id) == 32
    msgs = await drain(connection, "jobs", 2)
    assert [m.body for m in msgs] == [b"\x00raw"] * 2
    assert msgs[0].content_type == "application/octet-stream"


async def test_priorities_honoured_under_backlog(connection, settings, vhost):
    # Given a backlog of low-priority jobs with high-priority ones published after them
    topo = await declare(connection, vhost, QueueSpec("jobs", max_priority=10))
    async with AsyncProducer(settings, topo) as producer:
        for i in range(50):
            await producer.submit("jobs", {"i": i}, priority=1, job_id=f"low-{i}")
        for i in range(10):
            await producer.submit("jobs", {"i": i}, priority=9, job_id=f"high-{i}")
        await producer.flush()
    # When a consumer reads the queue
    msgs = await drain(connection, "jobs", 60)
    ids = [m.message_id for m in msgs]
    # Then every high-priority job comes first, each level in publish order
    assert ids[:10] == [f"high-{i}" for i in range(10)]
    assert ids[10:] == [f"low-{i}" for i in range(50)]


async def test_delays_honoured_within_one_second(connection, settings, vhost):
    # Given jobs delayed 1, 2, 3 and 5 seconds and one not delayed
    topo = await declare(connection, vhost, QueueSpec("jobs"), delay_levels=4)
    arrived: dict[str, float] = {}
    channel = await connection.channel()
    queue = await channel.get_queue("jobs")

    async def on_msg(msg):  # type: ignore[no-untyped-def]
        arrived[msg.message_id] = time.monotonic()
        await msg.ack()

    await queue.consume(on_msg)
    start = time.monotonic()
    async with AsyncProducer(settings, topo) as producer:
        for d in (5, 1, 3, 2):
            await producer.publish("jobs", {"d": d}, delay=d, job_id=f"d{d}")
        await producer.publish("jobs", {"d": 0}, job_id="d0")
    # When we wait long enough
    await wait_until(lambda: len(arrived) == 5, timeout=12, what="all delayed jobs")
    # Then each arrived no earlier than asked and less than a second late
    for d in (0, 1, 2, 3, 5):
        elapsed = arrived[f"d{d}"] - start
        assert d - 0.05 <= elapsed < d + 1.0, (d, elapsed)
    await channel.close()


async def test_backpressure_exactly_the_overflow_and_nothing_accepted_lost(connection, settings, vhost):
    # Given a queue capped at 50 messages
    topo = await declare(connection, vhost, QueueSpec("jobs", max_length=50))
    ledger = Ledger()
    refused: list[BackPressure] = []
    # When 100 jobs are published (pipelined)
    async with AsyncProducer(settings, topo, window=32) as producer:
        futs = {}
        for i in range(100):
            jid = f"job-{i}"
            ledger.sent.add(jid)
            futs[jid] = await producer.submit("jobs", {"i": i}, job_id=jid)
        await producer.flush()
    for jid, fut in futs.items():
        if fut.exception() is None:
            ledger.confirmed.add(jid)
        else:
            assert isinstance(fut.exception(), BackPressure)
            refused.append(fut.exception())  # type: ignore[arg-type]
    # Then exactly the overflow was refused, with a clear error naming queue and cap
    assert len(refused) == 50 and len(ledger.confirmed) == 50
    assert refused[0].queue == "jobs" and refused[0].cap == "50 messages"
    assert "jobs" in str(refused[0]) and "full" in str(refused[0])
    # And every accepted job is in the queue
    msgs = await drain(connection, "jobs", 50)
    ledger.record_received(m.message_id for m in msgs)
    assert ledger.lost == set() and ledger.duplicated == 0 and ledger.unexpected == set()


async def test_backpressure_wait_retries_until_room(connection, settings, vhost):
    topo = await declare(connection, vhost, QueueSpec("jobs", max_length=5))
    async with AsyncProducer(settings, topo) as producer:
        for i in range(5):
            await producer.publish("jobs", {"i": i})
        with pytest.raises(BackPressure):
            await producer.publish("jobs", {"i": 5}, wait=True, timeout=0.3)
        # When a consumer makes room while a waiting publish retries
        waiting = asyncio.ensure_future(producer.publish("jobs", {"i": 6}, wait=True, timeout=10))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await drain(connection, "jobs", 2)
        result = await waiting
    assert result.queue == "jobs"
    assert await depth(connection, "jobs") == 4


async def test_unroutable_raises(connection, settings, vhost):
    await declare(connection, vhost, QueueSpec("jobs"))
    async with AsyncProducer(settings) as producer:
        with pytest.raises(Unroutable) as info:
            await producer.publish("nope", {"x": 1})
        assert "nope" in str(info.value)
        # the producer keeps working after a return
        await producer.publish("jobs", {"x": 1})
    assert await depth(connection, "jobs") == 1


def _sync_publish(settings, topo):  # type: ignore[no-untyped-def]
    with Producer(settings, topo) as producer:
        producer.publish("jobs", {"n": 1}, priority=2, job_id="s-1")
        for i in range(4):
            producer.publish("jobs", {"n": i}, job_id=f"fill-{i}")
        with pytest.raises(BackPressure):
            producer.publish("jobs", {"n": 9})
        with pytest.raises(Unroutable):
            producer.publish("nope", {"n": 9})
        assert not producer.blocked


async def test_sync_producer_same_contract(connection, settings, vhost):
    topo = await declare(connection, vhost, QueueSpec("jobs", max_length=5), delay_levels=4)
    await asyncio.to_thread(_sync_publish, settings, topo)
    msgs = await drain(connection, "jobs", 5)
    by_id = {m.message_id: m for m in msgs}
    assert set(by_id) == {"s-1", "fill-0", "fill-1", "fill-2", "fill-3"}
    assert by_id["s-1"].priority == 2 and by_id["s-1"].headers[envelope.H_ATTEMPT] == 1
    # a delayed job from the sync producer arrives through the delay levels
    with Producer(settings, topo) as producer:
        await asyncio.to_thread(producer.publish, "jobs", {"n": 2}, delay=1, job_id="s-2")
    [delayed] = await drain(connection, "jobs", 1, timeout=5)
    assert delayed.message_id == "s-2" and delayed.headers[envelope.H_TARGET] == "jobs"

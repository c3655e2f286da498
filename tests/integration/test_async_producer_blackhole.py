"""The async producer on a silent network, as the sync one
(``test_sync_producer_blackhole.py``): a black hole ends ``publish`` within
``reconnect_timeout`` with ``BrokerUnavailable`` (never aiormq's raw ``CancelledError``, and
not first a 30 s confirm wait), a shorter one costs nothing, the outbox spools in seconds, and
a memory alarm's hold is waited out past that deadline.

Before (measured 2026-12-02, reconnect_timeout=5, heartbeat 10): a publish into a black hole
waited 30 s for its confirm, then aiormq cancelled the channel it was opening to check the
queue as its heartbeat check dropped the connection, and ``asyncio.CancelledError`` escaped
``publish()`` after 35 s.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from queuewatch.broker.connect import connect
from queuewatch.config import load_settings
from queuewatch.errors import BrokerUnavailable
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec
from tests.helpers import Ledger, declare, depth, drain, wait_until
from tests.integration.test_sync_producer_blackhole import (
    HELD,
    RECONNECT_TIMEOUT,
    SLACK,
    HoleAfterPublish,
    jobs_queue,
    port,
    via,
)
from tests.nodes import Node
from tests.proxy import TcpProxy


async def ends(aw: Any, limit: float = 90) -> tuple[float, Any, BaseException | None]:
    """How long ``aw`` took, its value, and what it raised (a CancelledError too)."""
    t0 = time.monotonic()
    try:
        value = await asyncio.wait_for(aw, limit)
    except BaseException as exc:  # the test says which
        return time.monotonic() - t0, None, exc
    return time.monotonic() - t0, value, None


def gave_up_in_time(took: float, error: BaseException | None) -> None:
    print(f"ended after {took:.1f}s: {error!r}")
    assert isinstance(error, BrokerUnavailable), repr(error)
    assert took <= RECONNECT_TIMEOUT + SLACK, f"BrokerUnavailable after {took:.1f}s"
    assert "may or may not have arrived" in str(error), str(error)


@pytest.mark.parametrize("heartbeat", [0, 10])
async def test_a_black_hole_between_publishes_ends_in_broker_unavailable_within_reconnect_timeout(
        settings, connection, heartbeat):  # type: ignore[no-untyped-def]
    topo = await jobs_queue(connection, settings)
    with TcpProxy(("127.0.0.1", port(settings))) as proxy:
        async with AsyncProducer(via(settings, proxy, heartbeat=heartbeat), topo,
                                 reconnect_timeout=RECONNECT_TIMEOUT) as producer:
            await producer.publish("jobs", {"n": 0}, job_id="before")
            # Given the network goes silent between two publishes (and stays so)
            proxy.blackhole()
            # When it publishes
            took, _, error = await ends(producer.publish("jobs", {"n": 1}, job_id="in-the-hole"))
            # Then BrokerUnavailable within reconnect_timeout (not CancelledError after 35 s)
            gave_up_in_time(took, error)
            # and, the network back, the same producer publishes again
            proxy.restore()
            took, _, error = await ends(producer.publish("jobs", {"n": 2}, job_id="after"), 30)
            assert error is None, repr(error)
    got = {m.message_id for m in await drain(connection, "jobs", 3, timeout=3)}
    assert {"before", "after"} <= got, got


async def test_a_black_hole_during_the_confirm_wait_ends_in_broker_unavailable(
        settings, connection):  # type: ignore[no-untyped-def]
    topo = await jobs_queue(connection, settings)
    with HoleAfterPublish(("127.0.0.1", port(settings))) as proxy:
        producer = AsyncProducer(via(settings, proxy, heartbeat=10), topo,
                                 reconnect_timeout=RECONNECT_TIMEOUT)
        await producer.connect()
        await producer.publish("jobs", {"n": 0}, job_id="before")
        # Given the network goes silent once the publish reached the broker (its confirm held)
        proxy.arm()
        # When the producer waits for that confirm
        took, _, error = await ends(producer.publish("jobs", HELD, job_id="held"))
        assert proxy.mode == "blackhole"
        # Then the wait ends with BrokerUnavailable within reconnect_timeout
        gave_up_in_time(took, error)
        # and closing the producer in the black hole does not hang either
        took, _, error = await ends(producer.close(), 20)
        assert error is None and took < 10, (took, error)
        proxy.restore()
    # The held job did reach the queue (the error said it may have): nothing was lost
    got = {m.message_id for m in await drain(connection, "jobs", 2, timeout=3)}
    assert got == {"before", "held"}, got


async def test_a_black_hole_shorter_than_reconnect_timeout_loses_nothing(settings, connection):  # type: ignore[no-untyped-def]
    topo = await jobs_queue(connection, settings)
    ledger = Ledger()
    failures: list[BaseException] = []
    stop = asyncio.Event()
    with TcpProxy(("127.0.0.1", port(settings))) as proxy:
        async with AsyncProducer(via(settings, proxy, heartbeat=10), topo,
                                 reconnect_timeout=10.0) as producer:

            async def publish_until_stopped() -> None:
                i = 0
                while not stop.is_set():
                    job_id = f"j-{i}"
                    ledger.sent.add(job_id)
                    try:
                        await producer.publish("jobs", {"i": i}, job_id=job_id)
                    except Exception as exc:  # counted: the test says which
                        failures.append(exc)
                    else:
                        ledger.confirmed.add(job_id)
                    i += 1
                    await asyncio.sleep(0.02)

            publisher = asyncio.ensure_future(publish_until_stopped())
            await asyncio.sleep(1.0)
            before = len(ledger.confirmed)
            # Given the network goes silent for 3 s (less than reconnect_timeout) while publishing
            proxy.blackhole()
            await asyncio.sleep(3.0)
            stuck = len(ledger.confirmed)
            proxy.restore()
            await asyncio.sleep(2.5)
            stop.set()
            await asyncio.wait_for(publisher, 30)
    # Then no publish failed, publishing went on after the hole, and nothing confirmed is lost
    assert not failures, failures
    assert before > 10 and len(ledger.confirmed) > stuck + 10, (before, stuck, len(ledger.confirmed))
    ledger.record_received(m.message_id for m in await drain(
        connection, "jobs", len(ledger.sent) + 10, timeout=3))
    summary = ledger.summary()
    assert summary["lost"] == 0 and summary["unexpected"] == 0, summary
    assert await depth(connection, "jobs") == 0


async def test_with_the_outbox_a_black_hole_spools_in_seconds_and_sends_after(
        settings, connection, tmp_path):  # type: ignore[no-untyped-def]
    topo = await jobs_queue(connection, settings)
    with TcpProxy(("127.0.0.1", port(settings))) as proxy:
        producer = AsyncProducer(via(settings, proxy, outbox_dir=tmp_path / "outbox"), topo,
                                 reconnect_timeout=RECONNECT_TIMEOUT)
        await producer.connect()
        await producer.publish("jobs", {"n": 0}, job_id="o-0")
        # Given the network goes silent
        proxy.blackhole()
        # When the producer publishes, Then each job is spooled within seconds
        for i in range(1, 4):
            took, value, error = await ends(producer.publish("jobs", {"n": i}, job_id=f"o-{i}"))
            print(f"publish {i} ended after {took:.1f}s: {error or value!r}")
            assert error is None, repr(error)
            assert value.spooled and took < 4, (took, value)
        # and once the network is back, what was spooled is sent in the background
        proxy.restore()
        assert producer.outbox is not None
        await wait_until(lambda: producer.outbox.depth == 0, timeout=30, what="the outbox drained")
        await producer.close()
    got = [m.message_id for m in await drain(connection, "jobs", 10, timeout=3)]
    assert set(got) == {f"o-{i}" for i in range(4)}, got


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_publish_held_by_a_memory_alarm_waits_past_its_deadline(throwaway_node: Node) -> None:
    settings = load_settings(env={}, amqp_url=throwaway_node.amqp_url, vhost="/")
    conn = await connect(settings)
    topo = await declare(conn, "/", QueueSpec("jobs"), delay_levels=1)
    async with AsyncProducer(settings, topo, reconnect_timeout=2.0) as producer:
        await producer.publish("jobs", {}, job_id="before")
        # Given a memory alarm: the broker blocks every publishing connection
        await asyncio.to_thread(throwaway_node.ctl, "set_vm_memory_high_watermark", "0")
        try:
            # When the producer publishes, Then it waits, past reconnect_timeout, for the alarm
            waiting = asyncio.ensure_future(ends(producer.publish("jobs", {}, job_id="held"), 120))
            await asyncio.sleep(2.0 + 2 * SLACK)
            assert not waiting.done(), waiting.result()
        finally:
            await asyncio.to_thread(throwaway_node.ctl, "set_vm_memory_high_watermark", "0.4")
        # and is confirmed once it clears
        _, value, error = await waiting
        assert error is None and value.job_id == "held", (value, error)
    got = [m.message_id for m in await drain(conn, "jobs", 5, timeout=3)]
    await conn.close()
    assert sorted(got) == ["before", "held"], got

"""The producer outbox on a throwaway node that can be stopped: with the broker down,
publishes return at once and land in the spool; a kill -9 of the producer (while spooling,
and again while draining) loses nothing that publish returned for; duplicates only among a
batch in flight."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from queuewatch.broker.connect import connect
from queuewatch.config import Settings, load_settings
from queuewatch.errors import ConfigError
from queuewatch.producer import AsyncProducer
from queuewatch.producer.outbox import BATCH
from queuewatch.topology import QueueSpec
from tests.helpers import declare, wait_until
from tests.nodes import Node
from tests.outboxes import start_producer

N = 10_000
CHUNK = 100


async def consume_all(settings: Settings, queue_name: str) -> Counter[str]:
    """Every message id on the queue (consumed until 3 s without a delivery)."""
    conn = await connect(settings)
    channel = await conn.channel()
    await channel.set_qos(prefetch_count=1000)
    queue = await channel.declare_queue(queue_name, passive=True)
    got: Counter[str] = Counter()
    try:
        async with queue.iterator(timeout=3) as it:
            async for msg in it:
                got[str(msg.message_id)] += 1
                await msg.ack()
    except TimeoutError:
        pass
    await conn.close()
    return got


def spool_depth(outbox: Path) -> int:
    db = sqlite3.connect(outbox / "outbox-test.sqlite")
    try:
        return int(db.execute("select count(*) from spool").fetchone()[0])
    finally:
        db.close()


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_outbox_survives_a_broker_outage_and_kill9_of_the_producer(
        throwaway_node: Node, tmp_path: Path) -> None:
    node = throwaway_node
    settings = replace(load_settings(env={}), amqp_url=node.amqp_url, vhost="/")
    conn = await connect(settings)
    await declare(conn, "/", QueueSpec("jobs", max_length=None), delay_levels=1)
    await conn.close()
    outbox, ledger = tmp_path / "outbox", tmp_path / "returned.txt"
    rng = random.Random()
    # Given the broker stopped
    node.stop()
    # When a producer publishes 10,000 jobs and is killed -9 at a random point
    p1 = start_producer(tmp_path, "1", amqp_url=node.amqp_url, outbox=outbox, ledger=ledger, n=N,
                        chunk=CHUNK)
    await wait_until(lambda: "CONNECTED" in p1.lines() or p1.proc.poll() is not None, timeout=60,
                     what="producer 1 up")
    target = rng.randrange(1_000, 9_000)
    await wait_until(lambda: (ledger.exists() and len(ledger.read_text().split()) >= target)
                     or p1.published() is not None, timeout=120, interval=0.01,
                     what="producer 1 spooling")
    p1.kill9()
    returned_1 = set(ledger.read_text().split())
    assert spool_depth(outbox) >= len(returned_1)  # everything publish returned for is there
    # and is restarted: it publishes the rest; every publish returns at once, spooled
    p2 = start_producer(tmp_path, "2", amqp_url=node.amqp_url, outbox=outbox, ledger=ledger, n=N,
                        chunk=CHUNK)
    await wait_until(lambda: p2.published() is not None or p2.proc.poll() is not None,
                     timeout=180, what="producer 2 publishes the rest")
    published = p2.published()
    assert published is not None, p2.err.read_text()[-3000:]
    n2, secs, spooled = published
    assert n2 == spooled == N - len(returned_1)
    depth_before = spool_depth(outbox)
    assert N <= depth_before <= N + CHUNK
    print(f"killed producer 1 after {len(returned_1)} returned; producer 2 spooled {n2} in "
          f"{secs:.2f}s ({n2 / max(secs, 1e-3):.0f}/s)")
    assert secs < 60, "spooled publishes must not wait for the broker"
    # When the broker starts, and the producer is killed -9 again while draining
    node.start()
    node.wait_up()
    await wait_until(lambda: (p2.depth() or N) < depth_before - 2 * BATCH, timeout=120,
                     what="draining started")
    await asyncio.sleep(rng.random() * 0.5)
    p2.kill9()
    p3 = start_producer(tmp_path, "3", amqp_url=node.amqp_url, outbox=outbox, ledger=ledger, n=N,
                        chunk=CHUNK)
    await wait_until(lambda: p3.depth() == 0, timeout=180, what="outbox drained")
    p3.kill9()
    # Then all 10,000 arrived: 0 lost, duplicates only from the batches in flight
    got = await consume_all(settings, "jobs")
    lost = {f"j-{i}" for i in range(N)} - set(got)
    dupes = sum(c - 1 for c in got.values() if c > 1)
    print(f"received {sum(got.values())}, unique {len(got)}, lost {len(lost)}, duplicates {dupes}")
    assert not lost
    assert set(got) == {f"j-{i}" for i in range(N)}
    assert dupes <= (depth_before - N) + BATCH


async def test_an_outbox_directory_that_cannot_be_written_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    settings = Settings(outbox_dir=blocker / "outbox", state_dir=tmp_path)
    with pytest.raises(ConfigError) as err:
        AsyncProducer(settings)
    text = str(err.value)
    assert "outbox spool" in text and "cannot be written" in text and "\n" not in text


async def test_outbox_keeps_priorities_delays_and_at_through_a_cut_link(
        settings: Settings, connection, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from urllib.parse import urlsplit

    from tests.proxy import TcpProxy

    topo = await declare(connection, settings.effective_vhost, QueueSpec("out", max_priority=10),
                         delay_levels=8)
    with TcpProxy(("127.0.0.1", urlsplit(settings.amqp_url).port or 5672)) as proxy:
        url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
        s = replace(settings, amqp_url=url, amqp_urls=(), outbox_dir=tmp_path / "outbox",
                    reconnect_max_delay=0.5)
        async with AsyncProducer(s, topo, connection_name="keep") as producer:
            assert producer.outbox is not None
            # Given a producer whose link is cut
            proxy.cut()
            await wait_until(lambda: not producer.link.alive, timeout=10, what="link down")
            # When it publishes jobs with priorities, a delay and an at=
            t0 = time.time()
            got = [await producer.publish("out", {"i": i}, priority=9 if i % 2 else 1,
                                          job_id=f"p-{i}") for i in range(6)]
            got.append(await producer.publish("out", {}, delay=4, job_id="later"))
            got.append(await producer.publish("out", {}, at=t0 + 3, job_id="at-job"))
            assert all(p.spooled for p in got) and producer.outbox.depth == 8
            assert time.time() - t0 < 2, "spooled publishes return at once"
            # and the link comes back
            await asyncio.sleep(1.0)
            proxy.restore()
            await wait_until(lambda: producer.outbox.depth == 0, timeout=30, what="drained")
            arrived: dict[str, tuple[int | None, float]] = {}
            channel = await connection.channel()
            queue = await channel.declare_queue("out", passive=True)

            async def on_message(msg) -> None:  # type: ignore[no-untyped-def]
                arrived[str(msg.message_id)] = (msg.priority, time.time())
                await msg.ack()

            await queue.consume(on_message)
            await wait_until(lambda: len(arrived) == 8, timeout=30, what="all 8 arrived")
            await channel.close()
    # Then every job arrived once with its priority, the delayed ones not before their time
    for i in range(6):
        assert arrived[f"p-{i}"][0] == (9 if i % 2 else 1)
    assert arrived["later"][1] >= t0 + 4 - 0.2
    assert arrived["at-job"][1] >= t0 + 3 - 0.2
    assert arrived["later"][1] < t0 + 12


async def test_outbox_cap_is_back_pressure(tmp_path: Path) -> None:
    from queuewatch.producer.outbox import OutboxFull

    s = Settings(amqp_url="amqp://guest:guest@127.0.0.1:1/", outbox_dir=tmp_path,
                 outbox_max_jobs=3, state_dir=tmp_path)
    async with AsyncProducer(s, connection_name="cap") as producer:
        for i in range(3):
            assert (await producer.publish("q", {"i": i})).spooled
        with pytest.raises(OutboxFull) as err:
            await producer.publish("q", {"i": 3})
        assert "outbox" in str(err.value) and "3 jobs" in str(err.value)
        t = time.monotonic()
        with pytest.raises(OutboxFull):
            await producer.publish("q", {"i": 3}, wait=True, timeout=0.5)
        assert time.monotonic() - t >= 0.5
        assert producer.outbox is not None and producer.outbox.depth == 3


async def test_sync_producer_outbox_through_a_cut_link_and_a_restart(
        settings: Settings, connection, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from urllib.parse import urlsplit

    from queuewatch.producer import Producer
    from tests.proxy import TcpProxy

    topo = await declare(connection, settings.effective_vhost, QueueSpec("sync", max_priority=10),
                         delay_levels=8)
    with TcpProxy(("127.0.0.1", urlsplit(settings.amqp_url).port or 5672)) as proxy:
        s = replace(settings, amqp_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/",
                    amqp_urls=(), outbox_dir=tmp_path / "outbox", reconnect_max_delay=0.5)

        def first_run() -> list[bool]:
            p = Producer(s, topo, connection_name="sync-out")
            p.connect()
            flags = [p.publish("sync", {}, job_id="s-0").spooled]
            proxy.cut()  # Given the broker goes away
            flags += [p.publish("sync", {"i": i}, job_id=f"s-{i}", priority=i % 10).spooled
                      for i in range(1, 41)]
            assert p.outbox is not None and p.outbox.depth == 40
            p.close()  # cannot send them: they stay in the spool
            return flags

        flags = await asyncio.to_thread(first_run)
        assert flags == [False] + [True] * 40
        proxy.restore()

        def second_run() -> int:
            p = Producer(s, topo, connection_name="sync-out")
            p.connect()  # When it starts again with the broker back: the spool is sent
            assert p.outbox is not None
            left = p.outbox.depth
            p.publish("sync", {}, job_id="s-41")
            p.close()
            return left

        assert await asyncio.to_thread(second_run) == 0
    got = await consume_all(settings, "sync")
    # Then all 42 arrived, each once
    assert got == Counter({f"s-{i}": 1 for i in range(42)})


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_outbox_takes_jobs_while_the_broker_blocks_publishing(
        throwaway_node: Node, tmp_path: Path) -> None:
    node = throwaway_node
    settings = replace(load_settings(env={}), amqp_url=node.amqp_url, vhost="/", job_events=False,
                       outbox_dir=tmp_path / "outbox")
    conn = await connect(settings)
    await declare(conn, "/", QueueSpec("jobs"), delay_levels=1)
    await conn.close()
    async with AsyncProducer(settings, connection_name="alarm") as producer:
        assert producer.outbox is not None
        assert not (await producer.publish("jobs", {}, job_id="before")).spooled
        # Given a memory alarm: the broker blocks every publishing connection
        await asyncio.to_thread(node.ctl, "set_vm_memory_high_watermark", "0")
        try:
            # When jobs are published: each returns within moments, spooled
            t0 = time.monotonic()
            got = [await producer.publish("jobs", {"i": i}, job_id=f"a-{i}") for i in range(20)]
            took = time.monotonic() - t0
            assert producer.blocked
            assert all(p.spooled for p in got[1:]) and took < 10, (took, got[:2])
        finally:
            await asyncio.to_thread(node.ctl, "set_vm_memory_high_watermark", "0.4")
        # Then once the alarm clears they are all sent
        await wait_until(lambda: producer.outbox.depth == 0 and not producer.blocked, timeout=60,
                         what="drained after the alarm")
    received = await consume_all(settings, "jobs")
    assert set(received) == {"before", *(f"a-{i}" for i in range(20))}
    assert sum(received.values()) <= 22  # the publish in flight when blocked may arrive twice
    print(f"20 publishes during the alarm took {took:.2f}s; received {dict(received)}")

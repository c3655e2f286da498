"""The blocking producer's outbox is visible outside it too (issue 13 item 4): with the outbox
on, a sync :class:`~queuewatch.producer.Producer` sends producer heartbeats from a daemon
thread (spool depth, oldest age, cap), the monitor lists it, and ``close`` ends the thread.

The producer reaches the broker through a TCP proxy: cut, its publishes are spooled; back, its
beats (on their own connection) show the backlog until the producer drains it, then 0."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace
from pathlib import Path

from queuewatch.config import Settings
from queuewatch.monitor.model import ProducerStats
from queuewatch.monitor.session import MonitorSession
from queuewatch.producer import Producer
from queuewatch.topology import QueueSpec
from tests.helpers import declare, drain, wait_until
from tests.proxy import TcpProxy

N = 5


async def test_a_sync_producers_outbox_shows_in_its_beats_and_the_thread_ends_on_close(
        settings: Settings, connection, vhost: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Given a sync producer with an outbox behind a proxy, and a monitor
    await declare(connection, vhost, QueueSpec("jobs"), delay_levels=1)
    with TcpProxy(("127.0.0.1", 5672)) as proxy:
        psettings = replace(settings, amqp_url=settings.amqp_url.replace(":5672", f":{proxy.port}"),
                            outbox_dir=tmp_path / "outbox", job_events=False,
                            reconnect_max_delay=0.5)
        producer = Producer(psettings, connection_name="sync-web-1", reconnect_timeout=5)
        await asyncio.to_thread(producer.connect)
        assert producer.beats is not None and producer.outbox is not None
        thread = producer.beats.thread
        assert thread is not None and thread.is_alive() and thread.daemon
        session = MonitorSession(settings, name="test-monitor")
        await session.start()
        closed = False
        try:
            async def seen(pred) -> ProducerStats | None:  # type: ignore[no-untyped-def]
                snap = await session.poll()
                return next((p for p in snap.producers
                             if p.producer_id == "sync-web-1" and pred(p)), None)

            # (its beats arrive while it is connected, with an empty outbox)
            await wait_until(lambda: seen(lambda p: p.outbox_depth == 0), timeout=15,
                             interval=0.3, what="a first beat")
            # When the link is cut and N jobs are published: all spooled
            proxy.cut()
            got = await asyncio.to_thread(
                lambda: [producer.publish("jobs", {"n": i}, job_id=f"s-{i}") for i in range(N)])
            assert all(p.spooled for p in got)
            assert producer.outbox.depth == N
            # and the link comes back (the blocking producer sends nothing until its next call)
            proxy.restore()
            # Then a beat carries the backlog: depth N, an age, the cap
            p = None

            async def backlog() -> bool:
                nonlocal p
                p = await seen(lambda i: i.outbox_depth == N)
                return p is not None
            await wait_until(backlog, timeout=15, interval=0.3, what="the backlog in a beat")
            assert p is not None
            assert p.outbox_cap == psettings.outbox_max_jobs and p.pid
            assert p.outbox_oldest_age is not None and p.outbox_oldest_age > 0
            # When the producer drains its outbox
            assert await asyncio.to_thread(producer.drain, 10.0)
            # Then a later beat says 0, and the jobs are in the queue
            await wait_until(lambda: seen(lambda i: i.outbox_depth == 0), timeout=15,
                             interval=0.3, what="the outbox empty in a beat")
            bodies = await drain(connection, "jobs", N, timeout=5)
            assert len(bodies) == N
            # When it is closed, Then close returns promptly and the beat thread is gone
            t0 = time.monotonic()
            await asyncio.to_thread(producer.close)
            closed = True
            assert time.monotonic() - t0 < 5
            assert not thread.is_alive()
            assert thread not in threading.enumerate()
        finally:
            await session.aclose()
            if not closed:
                await asyncio.to_thread(producer.close)

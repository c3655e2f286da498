"""An outbox's backlog is visible outside the producer (issue 13 item 4): in the producer's
heartbeat, the monitor's snapshot (with an ``outbox_backlog`` alert), the exporter and the
console's Workers view — and back to 0 once it drained.

The producer reaches the broker through a TCP proxy: cut, its publishes are spooled; back,
the spool drains into a queue capped at 100 (reject-publish), so the rest stays spooled —
a backlog that lasts, with the link up, so its beats can be seen — until the queue is
emptied."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from prometheus_client import CollectorRegistry

from queuewatch.config import Settings
from queuewatch.metrics.collector import QueuewatchCollector
from queuewatch.monitor.model import Snapshot
from queuewatch.monitor.session import MonitorSession
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec
from queuewatch.tui.widgets.views import producers_text
from tests.helpers import declare, drain, wait_until
from tests.proxy import TcpProxy
from tests.tui.live_helpers import live_app, wait_for


async def test_an_outbox_backlog_shows_in_heartbeat_monitor_exporter_and_console(
        settings: Settings, connection, vhost: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Given a queue capped at 100 and a producer with an outbox behind a proxy
    await declare(connection, vhost, QueueSpec("jobs", max_length=100), delay_levels=1)
    t = replace(settings.thresholds, oldest_age_warning=1.0)
    settings = replace(settings, thresholds=t)
    with TcpProxy(("127.0.0.1", 5672)) as proxy:
        psettings = replace(settings, amqp_url=settings.amqp_url.replace(":5672", f":{proxy.port}"),
                            outbox_dir=tmp_path / "outbox", job_events=False,
                            reconnect_max_delay=0.5)
        producer = AsyncProducer(psettings, connection_name="web-1")
        await producer.connect()
        session = MonitorSession(settings, name="test-monitor")
        await session.start()
        try:
            # When the link is cut and 300 jobs are published: all spooled at once
            proxy.cut()
            await wait_until(lambda: not producer.link.alive, timeout=10, what="link down")
            got = await asyncio.gather(*(producer.publish("jobs", {"n": i}, job_id=f"j-{i}")
                                         for i in range(300)))
            assert all(p.spooled for p in got)
            # and the link comes back: 100 go in, the queue refuses the rest
            proxy.restore()
            snap: Snapshot | None = None

            async def backlog_seen() -> bool:
                nonlocal snap
                snap = await session.poll()
                return any(p.producer_id == "web-1" and p.outbox_depth >= 150 and p.draining
                           for p in snap.producers)
            await wait_until(backlog_seen, timeout=30, interval=0.3, what="the backlog in a heartbeat")
            assert snap is not None
            # Then the monitor shows it (not as a worker), with an alert
            (p,) = snap.producers
            assert p.outbox_cap == psettings.outbox_max_jobs and p.host and p.pid
            assert p.outbox_oldest_age is not None and p.outbox_oldest_age > 0
            assert not [w for w in snap.workers if w.worker_id == "web-1"]
            await wait_until(lambda: _alerted(session), timeout=15, interval=0.3,
                             what="the outbox_backlog alert")
            # and the exporter
            registry = CollectorRegistry()
            last = snap
            registry.register(QueuewatchCollector(lambda: last))
            depth = registry.get_sample_value("queuewatch_producer_outbox_depth", {"producer": "web-1"})
            assert depth == p.outbox_depth
            assert (registry.get_sample_value("queuewatch_producer_outbox_oldest_age_seconds",
                                              {"producer": "web-1"}) or 0) > 0
            # and the console's Workers view
            assert "web-1" in producers_text(snap).plain and "outbox" in producers_text(snap).plain
            app = live_app(settings)
            async with app.run_test(size=(120, 36)) as pilot:
                await pilot.press("2")
                line = app.query_one("#workers-producers")
                await wait_for(pilot, lambda: "web-1" in str(line.render())
                               and "oldest" in str(line.render()), what="the producer line")
            # When the queue is emptied, Then the outbox drains to 0 and the beats say so
            taken = 0
            while taken < 300:
                taken += len(await drain(connection, "jobs", 300, timeout=1))
                if producer.outbox is not None and producer.outbox.depth == 0 and taken >= 300:
                    break

            async def empty() -> bool:
                s = await session.poll()
                return any(p.producer_id == "web-1" and p.outbox_depth == 0 for p in s.producers)
            await wait_until(empty, timeout=30, interval=0.3, what="the outbox empty in a heartbeat")
            assert taken == 300
        finally:
            await session.aclose()
            await producer.close()


async def _alerted(session: MonitorSession) -> bool:
    snap = await session.poll()
    return any(a.kind == "outbox_backlog" and a.target == "web-1" for a in snap.alerts)


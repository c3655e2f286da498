"""The exporter started while RabbitMQ's AMQP port does not answer: once it answers, the
scheduled-job counts (read from the job events stream) are exported, however long it took.
Before (2026-12-02): after a first minute without the broker the exporter logged "scheduled
job counts not exported" once and never tried again (until restarted)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from urllib.parse import urlsplit

import pytest

from queuewatch.metrics.server import Exporter
from queuewatch.producer import AsyncProducer
from queuewatch.topology import DEFAULT_DELAY_LEVELS, QueueSpec
from tests.helpers import declare, wait_until
from tests.proxy import TcpProxy

#: Longer than the 30 s one start of the job events reader waits for a channel.
AWAY = 40.0


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_scheduled_counts_are_exported_once_a_late_broker_answers(connection, settings, vhost):  # type: ignore[no-untyped-def]
    # Given a job scheduled for tomorrow on "reminders"
    topo = await declare(connection, vhost, QueueSpec("reminders"), delay_levels=DEFAULT_DELAY_LEVELS)
    async with AsyncProducer(settings, topo) as producer:
        await producer.publish("reminders", {}, job_id="tomorrow", delay=86400)
    with TcpProxy(("127.0.0.1", urlsplit(settings.amqp_url).port or 5672)) as proxy:
        # And an exporter started while its AMQP link is cut (the management API answers)
        proxy.cut()
        late = replace(settings, amqp_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/",
                       amqp_urls=(), reconnect_max_delay=1.0)
        exporter = await asyncio.to_thread(Exporter, late, heartbeats=False, max_age=0.5)
        try:
            sample = exporter.registry.get_sample_value
            labels = {"vhost": vhost, "queue": "reminders"}
            # When the broker answers only after AWAY seconds
            t0 = time.monotonic()
            while time.monotonic() - t0 < AWAY:
                assert sample("queuewatch_queue_scheduled_jobs", labels) is None
                await asyncio.sleep(1.0)
            proxy.restore()
            # Then the scheduled count is exported soon after
            await wait_until(lambda: sample("queuewatch_queue_scheduled_jobs", labels) == 1,
                             timeout=60, what="the exporter's scheduled count")
            print(f"exported {time.monotonic() - t0 - AWAY:.1f}s after the broker answered")
        finally:
            await asyncio.to_thread(exporter.close)

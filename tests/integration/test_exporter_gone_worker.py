"""The exporter after a worker is killed -9 (QA of the monitor's faces after faults).

Before the fix ``queuewatch_worker_in_flight_jobs`` kept the last beat's in-flight count of
a worker that was gone (killed, its connection closed, its jobs requeued by the broker):
a stale value presented as current until the worker was forgotten, 5 minutes later. Like
``queuewatch_worker_consumer_live`` and the Busy view, it now comes from fresh beats only.
"""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import replace

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from queuewatch.config import Thresholds
from queuewatch.metrics import Exporter
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec
from tests.helpers import declare, wait_until
from tests.workers import start_worker_process, wait_consuming

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

QUICK = Thresholds(heartbeat_stale_seconds=4.0)


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics", timeout=30)).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def in_flight(m: dict, worker: str) -> float | None:  # type: ignore[type-arg]
    return next((v for (name, labels), v in m.items()
                 if name == "queuewatch_worker_in_flight_jobs" and ("worker", worker) in labels),
                None)


async def test_a_gone_workers_last_in_flight_jobs_are_not_exported(
        settings, connection, mgmt, vhost, tmp_path):
    # Given a worker process running three 60 s jobs, and an exporter watching it
    topo = await declare(connection, vhost, QueueSpec("work"), mgmt=mgmt, delay_levels=1)
    quick = replace(settings, thresholds=QUICK)
    wp = start_worker_process(tmp_path, amqp_url=settings.amqp_url, vhost=vhost,
                              worker_id="w-k9", specs=[{"name": "work"}])
    exporter = await asyncio.to_thread(Exporter, quick, topology=topo, max_age=0.3)
    try:
        port = exporter.start(0)
        await wait_consuming(wp, "work")
        async with AsyncProducer(settings, topo) as producer:
            for _ in range(3):
                await producer.publish("work", {"sleep": 60})
        m: dict = {}  # type: ignore[type-arg]

        async def running(n: float) -> bool:
            m.update(await scrape(port))
            return in_flight(m, "w-k9") == n and m[("queuewatch_workers_up", ())] == 1

        await wait_until(lambda: running(3), timeout=20, interval=0.3, what="3 jobs in flight")
        # When the worker is killed -9 (the broker closes its connection, requeues its jobs)
        os.kill(wp.proc.pid, signal.SIGKILL)
        await asyncio.to_thread(wp.proc.wait, 10)
        # Then once it is judged gone, it is not up, not hung, and its last beat's jobs are
        # not exported as running now (its heartbeat age still is: that is what is known)

        async def gone() -> bool:
            m.clear()
            m.update(await scrape(port))
            return m[("queuewatch_workers_up", ())] == 0 and any(
                name == "queuewatch_worker_heartbeat_age_seconds" and v > 6
                for (name, _), v in m.items())

        await wait_until(gone, timeout=20, interval=0.3, what="worker judged gone")
        assert m[("queuewatch_workers_hung", ())] == 0
        assert in_flight(m, "w-k9") is None, m
        assert m[("queuewatch_stuck_jobs_overall", ())] == 0
    finally:
        await asyncio.to_thread(exporter.close)
        if wp.proc.poll() is None:
            wp.proc.kill()

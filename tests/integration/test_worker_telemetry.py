"""Worker telemetry on the real broker: heartbeats, operator cancel, the metrics endpoint,
and the connection name that ties a worker to its AMQP connection."""

from __future__ import annotations

import asyncio
import urllib.request

import aio_pika

from queuewatch import envelope
from queuewatch.producer import AsyncProducer
from queuewatch.telemetry import ControlCommand, Heartbeat, control_routing_key
from queuewatch.topology import QueueSpec, RetryPolicy
from queuewatch.worker import Job, Worker
from tests.helpers import declare, depth, wait_until
from tests.workers import dead_letters, running


async def test_heartbeats_report_in_flight_jobs_and_counts(connection, settings, vhost, mgmt):
    topo = await declare(connection, vhost, QueueSpec("jobs"))
    channel = await connection.channel()
    beats_q = await channel.declare_queue(exclusive=True)
    await beats_q.bind(topo.telemetry_exchange, routing_key="heartbeat.#")
    beats: list[Heartbeat] = []

    async def on_beat(msg):  # type: ignore[no-untyped-def]
        beats.append(Heartbeat.from_json(msg.body))
        await msg.ack()

    await beats_q.consume(on_beat)
    release = asyncio.Event()
    worker = Worker(settings, topo, worker_id="hb-1", concurrency=3, heartbeat_interval=0.3)

    @worker.job("jobs")
    async def handle(job: Job) -> None:
        if job.payload.get("hold"):
            await release.wait()

    async with running(worker), AsyncProducer(settings, topo) as producer:
        for i in range(5):
            await producer.publish("jobs", {}, job_id=f"quick{i}")
        await producer.publish("jobs", {"hold": True}, job_id="held")
        await wait_until(lambda: any(b.in_flight for b in beats), timeout=5, what="busy beat")
        busy = next(b for b in beats if b.in_flight)
        release.set()
        await wait_until(lambda: sum(b.succeeded for b in beats) == 6, timeout=5, what="counts")
        name = f"queuewatch-worker {worker.worker_id}"

        async def listed() -> bool:
            conns = await mgmt.connections(vhost)
            return any(c.get("client_properties", {}).get("connection_name") == name for c in conns)

        await wait_until(listed, timeout=15, interval=0.5, what="connection in the management API")
    assert busy.worker_id == "hb-1" and busy.queues == ("jobs",) and busy.concurrency == 3
    assert [j.job_id for j in busy.in_flight] == ["held"] and busy.in_flight[0].attempt == 1
    assert busy.rss_bytes > 0 and busy.cpu_percent >= 0
    assert busy.connection_name == name
    await channel.close()


async def test_operator_cancel_dead_letters_the_running_job(connection, settings, vhost):
    retry = RetryPolicy(max_attempts=5)
    topo = await declare(connection, vhost, QueueSpec("jobs", retry=retry))
    started = asyncio.Event()
    others: list[str] = []
    worker = Worker(settings, topo, worker_id="ctl-1")

    @worker.job("jobs")
    async def handle(job: Job) -> None:
        if job.job_id == "stuck":
            started.set()
            await asyncio.sleep(60)
        others.append(job.job_id)

    async with running(worker), AsyncProducer(settings, topo) as producer:
        await producer.publish("jobs", {}, job_id="stuck")
        await asyncio.wait_for(started.wait(), 5)
        # When an operator sends a cancel command for the stuck job
        channel = await connection.channel()
        exchange = await channel.get_exchange(topo.control_exchange)
        await exchange.publish(
            aio_pika.Message(ControlCommand(action="cancel", job_id="stuck",
                                            requested_by="test").to_json()),
            routing_key=control_routing_key("ctl-1"),
        )
        [dead] = await dead_letters(connection, "jobs", 1, timeout=5)
        # Then the worker keeps working
        await producer.publish("jobs", {}, job_id="after")
        await wait_until(lambda: others == ["after"], what="next job")
        await channel.close()
    assert dead.message_id == "stuck"
    assert dead.headers[envelope.H_DEAD_REASON] == "cancelled by operator"
    assert dead.headers[envelope.H_WORKER] == "ctl-1"
    assert await depth(connection, "jobs") == 0


async def test_metrics_endpoint_serves_the_worker_metrics(connection, settings, vhost):
    topo = await declare(connection, vhost, QueueSpec("jobs"))
    worker = Worker(settings, topo, metrics_port=0)
    done: list[str] = []

    @worker.job("jobs")
    async def handle(job: Job) -> None:
        done.append(job.job_id)

    async with running(worker), AsyncProducer(settings, topo) as producer:
        await producer.publish("jobs", {})
        await wait_until(lambda: len(done) == 1, what="job")
        url = f"http://127.0.0.1:{worker.metrics_port}/metrics"
        scraped: list[str] = []

        async def counted() -> bool:
            # the outcome is counted after the ack, which follows the idempotency commit
            scraped[:] = [await asyncio.to_thread(
                lambda: urllib.request.urlopen(url, timeout=5).read().decode())]
            return 'queuewatch_jobs_total{outcome="succeeded",queue="jobs"} 1.0' in scraped[0]

        await wait_until(counted, timeout=10, what="the succeeded job in /metrics")
        text = scraped[0]
    for name in ("queuewatch_job_duration_seconds_bucket", "queuewatch_jobs_in_progress",
                 "queuewatch_producer_blocked 0.0"):
        assert name in text

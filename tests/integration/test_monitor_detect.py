"""Stuck jobs, hung workers, stalled and orphaned queues: detected when scripted, not when healthy.

Workers are simulated by publishing :class:`Heartbeat` messages to the telemetry exchange, as
real workers do; the hung worker keeps a real AMQP connection (with its ``connection_name``)
open after its heartbeats stop. Healthy counterparts run in the same vhost and snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import replace

import aio_pika
import pytest

from queuewatch.broker.connect import connect
from queuewatch.cli.main import main
from queuewatch.config import Thresholds
from queuewatch.monitor import AmqpHeartbeatSource, Monitor
from queuewatch.telemetry import Heartbeat, InFlightJob, heartbeat_routing_key
from queuewatch.topology import QueueSpec, Topology
from tests.helpers import wait_until

pytestmark = pytest.mark.timeout(90)


def beat(worker_id: str, jobs: tuple[InFlightJob, ...] = (), conn: str | None = None) -> Heartbeat:
    return Heartbeat(worker_id=worker_id, host="testhost", pid=4242, sent_at=time.time(),
                     queues=("jobs",), concurrency=4, cpu_percent=12.5, rss_bytes=50 << 20,
                     in_flight=jobs, succeeded=3, interval=0.3, connection_name=conn)


async def test_detectors_scripted_vs_healthy(connection, mgmt, settings, vhost, capsys):
    # Given thresholds fit for a test, and a topology where "slow" jobs are stuck after 120 s
    # (far above how long this test runs, so the healthy slow job cannot age into "stuck")
    settings = replace(settings, thresholds=Thresholds(
        stalled_polls=2, heartbeat_stale_seconds=1.5, stuck_job_seconds=300))
    topology = Topology(queues=(QueueSpec("slow", stuck_after=120),))
    source = AmqpHeartbeatSource(connection, settings.telemetry_exchange)
    await source.start()  # declares the telemetry exchange (topic, durable) when missing
    ch = await connection.channel()
    telemetry = await ch.get_exchange(settings.telemetry_exchange)

    async def send(hb: Heartbeat) -> None:
        await telemetry.publish(aio_pika.Message(hb.to_json()), heartbeat_routing_key(hb.worker_id))

    now = time.time()
    stuck_jobs = (InFlightJob("job-old", "jobs", 1, now - 400),
                  InFlightJob("job-slow-stuck", "slow", 2, now - 130),
                  InFlightJob("job-slow-ok", "slow", 1, now))
    # a hung worker: one heartbeat naming its still-open connection, then silence
    hung_name = f"hung-{uuid.uuid4().hex[:8]}"
    hung_conn = await connect(settings, client_properties={"connection_name": hung_name})
    ok_name = f"ok-{uuid.uuid4().hex[:8]}"
    ok_conn = await connect(settings, client_properties={"connection_name": ok_name})
    await send(beat("w-hung", (InFlightJob("job-h", "jobs", 1, now),), conn=hung_name))
    # a worker that is gone: silent, and its connection is closed too
    await send(beat("w-gone", conn=f"gone-{uuid.uuid4().hex[:8]}"))

    async def keep_beating() -> None:
        while True:
            await send(beat("w-stuck", stuck_jobs))
            await send(beat("w-ok", (InFlightJob("job-new", "jobs", 1, time.time() - 1),), ok_name))
            await asyncio.sleep(0.3)

    # queues: "stalled" (consumer holds everything, never acks), "orphan" (no consumer),
    # "healthy" (steady traffic, acked), "idle" (empty, no consumer)
    for name in ("stalled", "orphan", "healthy", "idle"):
        await ch.declare_queue(name, durable=True)
    for _ in range(10):
        await ch.default_exchange.publish(aio_pika.Message(b"x"), "stalled")
    for _ in range(5):
        await ch.default_exchange.publish(aio_pika.Message(b"x"), "orphan")
    holder = await connection.channel()
    await holder.set_qos(prefetch_count=20)

    async def never_ack(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        """Holds the message forever."""

    await (await holder.declare_queue("stalled", passive=True)).consume(never_ack)
    acker = await ok_conn.channel()

    async def ack(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await message.ack()

    await (await acker.declare_queue("healthy", passive=True)).consume(ack)

    async def healthy_traffic() -> None:
        while True:
            await ch.default_exchange.publish(aio_pika.Message(b"x"), "healthy")
            await asyncio.sleep(0.05)

    tasks = [asyncio.create_task(keep_beating()), asyncio.create_task(healthy_traffic())]
    try:
        async def stats_ready() -> bool:
            s, o, h = [await mgmt.queue(vhost, n) or {} for n in ("stalled", "orphan", "healthy")]
            ack_rate = ((h.get("message_stats") or {}).get("ack_details") or {}).get("rate", 0)
            return (s.get("messages_unacknowledged") == 10 and s.get("consumers") == 1
                    and o.get("messages_ready") == 5 and ack_rate > 0)

        await wait_until(stats_ready, timeout=30, interval=0.5, what="stats of the scenario")
        # When the monitor polls stalled_polls times
        monitor = Monitor(mgmt, settings, topology=topology, heartbeats=source)
        first = await monitor.poll()
        snap = await monitor.poll()
        # and the CLI is asked about stuck jobs and workers (it listens to heartbeats itself)
        capsys.readouterr()
        rc_jobs = await asyncio.to_thread(
            main, ["jobs", "stuck", "--json", "--vhost", vhost, "--listen", "1"])
        cli_stuck = json.loads(capsys.readouterr().out)
        rc_workers = await asyncio.to_thread(main, ["workers", "--vhost", vhost, "--listen", "1"])
        workers_table = capsys.readouterr().out
    finally:
        for t in tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await hung_conn.close()
        await ok_conn.close()

    # Then the scripted problems are each detected...
    assert "stalled" not in first.stalled_queues  # one poll is not enough
    assert snap.stalled_queues == ("stalled",)
    assert snap.orphaned_queues == ("orphan",)
    assert sorted(s.job_id for s in snap.stuck_jobs) == ["job-old", "job-slow-stuck"]
    slow = next(s for s in snap.stuck_jobs if s.job_id == "job-slow-stuck")
    assert slow.threshold == 120 and slow.worker_id == "w-stuck"
    workers = {w.worker_id: w for w in snap.workers}
    assert workers["w-hung"].hung and workers["w-hung"].connection_open is True
    kinds = {(a.kind, a.target) for a in snap.alerts}
    assert {("stalled", "stalled"), ("orphaned", "orphan"), ("hung_worker", "w-hung"),
            ("stuck_job", "job-old"), ("stuck_job", "job-slow-stuck")} <= kinds
    # ...and the healthy ones are not
    assert not workers["w-gone"].hung and workers["w-gone"].connection_open is False
    assert not workers["w-ok"].hung and not workers["w-stuck"].hung
    assert workers["w-ok"].heartbeat_age < 1.5
    targets = {a.target for a in snap.alerts}
    assert not targets & {"healthy", "idle", "w-ok", "w-gone", "job-new", "job-slow-ok", "job-h"}
    # The CLI shows the same
    assert rc_jobs == 0 and {s["job_id"] for s in cli_stuck} == {"job-old"}  # no topology given
    assert rc_workers == 0
    rows = {line.split()[0]: line for line in workers_table.splitlines()[1:]}
    assert rows["w-stuck"].rstrip().endswith("up") and "3/4" in rows["w-stuck"]

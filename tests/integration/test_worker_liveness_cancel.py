"""A broker-sent cancel while a job runs (issue 11), on a 2-node loopback cluster: the node
holding the worker's classic queue is killed under a running job. The job finishes, its ack
cannot reach the queue, the worker says it is not consuming and why; when the node is back
the worker consumes again, the redelivered job is skipped as a duplicate, later jobs are
done, and SIGTERM ends it cleanly — also while the job events stream takes no writes
(on a 2-node cluster its coordinator can stay without a majority for minutes)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from queuewatch.broker.connect import connect
from queuewatch.broker.declare import declare_topology
from queuewatch.config import load_settings
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec, Topology
from tests.cluster import start_cluster
from tests.helpers import Ledger, depth, wait_until
from tests.nodes import rabbitmq_installed
from tests.workers import elapsed_since, start_worker_process, wait_consuming

HELD_JOB = 8.0
RESUME_WITHIN = 10.0


@pytest.mark.slow
@pytest.mark.timeout(420)
async def test_cancel_while_a_job_runs_its_redelivery_is_absorbed(tmp_path, capsys):
    if not rabbitmq_installed():
        pytest.skip("rabbitmq-server is not installed here")
    cluster = await asyncio.to_thread(start_cluster, tmp_path / "cluster", size=2, management=False)
    wp = None
    try:
        home, away = cluster.nodes
        on_away = replace(load_settings(env={}, amqp_url=away.amqp_url, vhost="/"),
                          state_dir=tmp_path / "state")
        on_home = replace(on_away, amqp_url=home.amqp_url)
        topo = Topology(queues=(QueueSpec("jobs"),), delay_levels=1)
        conn = await connect(on_away)  # a classic queue lives on the node that declared it
        await declare_topology(conn, topo, "/")
        await conn.close()
        # Given a worker connected to the other node, running a job from that queue
        wp = start_worker_process(tmp_path, amqp_url=home.amqp_url, vhost="/",
                                  worker_id="cancel-1", specs=[{"name": "jobs"}])
        await wait_consuming(wp, "jobs")
        ledger = Ledger()
        async with AsyncProducer(on_home, topo) as producer:
            ledger.sent.add("held")
            await producer.publish("jobs", {"sleep": HELD_JOB}, job_id="held")
            ledger.confirmed.add("held")
        await wait_until(lambda: "held" in wp.runs(), timeout=10, what="the job started")
        # When the queue's node dies under it, the broker cancels the consumer
        await asyncio.to_thread(cluster.kill9, 1)
        await wait_until(lambda: wp.metric("queuewatch_consumer_live", queue="jobs") == 0.0,
                         timeout=15, interval=0.1, what="the cancel seen by the worker")
        # Then the job still finishes (its ack cannot reach the queue)
        await wait_until(lambda: "held" in wp.runs("done"), timeout=HELD_JOB + 5,
                         what="the running job finished")
        # When the node is back, the worker consumes again and skips the redelivery
        await asyncio.to_thread(cluster.restart, 1)
        back = time.monotonic()
        await wait_until(lambda: wp.metric("queuewatch_consumer_live", queue="jobs") == 1.0,
                         timeout=RESUME_WITHIN, interval=0.05, what="consuming again")
        resumed = elapsed_since(back)
        await wait_until(
            lambda: wp.metric("queuewatch_jobs_total", queue="jobs", outcome="duplicate") == 1.0,
            timeout=30, what="the redelivery skipped as a duplicate")
        later = [f"later-{i}" for i in range(10)]
        async with AsyncProducer(on_home, topo) as producer:
            for jid in later:
                ledger.sent.add(jid)
                await producer.publish("jobs", {"sleep": 0}, job_id=jid)
                ledger.confirmed.add(jid)
        await wait_until(lambda: set(later) <= set(wp.runs("done")), timeout=10,
                         what="the later jobs")
        conn = await connect(on_home)
        assert await depth(conn, "jobs") == 0
        await conn.close()
        rc = await asyncio.to_thread(wp.terminate)
    finally:
        if wp is not None and wp.proc.poll() is None:
            wp.proc.kill()
        await asyncio.to_thread(cluster.close)
    with capsys.disabled():
        print(f"\ncancel (queue's node killed): consuming again {resumed}s after the node was back")
    runs, err = wp.runs(), wp.stderr()
    ledger.record_received(wp.runs("done"))
    assert ledger.lost == set() and ledger.unexpected == set(), ledger.summary()
    assert len(runs["held"]) == 1, runs
    assert resumed <= RESUME_WITHIN
    assert "not consuming 'jobs'" in err and "succeeded but its channel was closed" in err, err
    assert rc == 0 and "Traceback" not in err and "Task was destroyed" not in err, err[-3000:]
    # The job link stayed up: on a 2-node cluster the job events stream can stay without a
    # writable majority for minutes after the kill (RabbitMQ then closes any connection that
    # publishes to it); that traffic has its own connection, and jobs go on after events_hold.
    assert "link queuewatch-worker cancel-1" not in err, err[-3000:]

"""consumer_timeout (issue 11): the broker closes the channel of a worker whose job runs past
it. On a throwaway node with ``consumer_timeout = 10000``: the worker consumes again within
seconds, the long job is not lost and runs once (its redelivery waits for the first run and
is then skipped as a duplicate), later jobs are all done, the worker says what happened and
what to change, counts it, and SIGTERM ends it cleanly.

RabbitMQ 3.10 checks the timeout on each channel's tick, every 60 s from the channel's start
(``channel_tick_interval``), so the close comes 10-60 s after the delivery (measured: 60.0 s
for a delivery on a fresh channel): the long job lasts 75 s to be sure it is hit.
"""

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
from tests.helpers import Ledger, depth, wait_until
from tests.nodes import rabbitmq_installed, start_node
from tests.workers import elapsed_since, log_time, start_worker_process, wait_consuming

LONG_JOB = 75.0
#: The tick (60 s) plus the 10 s timeout, and some slack for a loaded machine.
CLOSE_WITHIN = 90.0
RESUME_WITHIN = 10.0


@pytest.mark.slow
@pytest.mark.timeout(420)
@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_consumer_timeout_loses_nothing_and_the_rerun_is_absorbed(tmp_path, capsys,
                                                                        queue_type):
    if not rabbitmq_installed():
        pytest.skip("rabbitmq-server is not installed here")
    node = await asyncio.to_thread(start_node, tmp_path / "node",
                                   config_extra="consumer_timeout = 10000")
    wp = None
    try:
        settings = replace(load_settings(env={}, amqp_url=node.amqp_url, vhost="/"),
                           state_dir=tmp_path / "state")
        spec = {"name": "jobs", "queue_type": queue_type,
                "max_priority": 0 if queue_type == "quorum" else 10}
        topo = Topology(queues=(QueueSpec(**spec),), delay_levels=1)  # type: ignore[arg-type]
        conn = await connect(settings)
        await declare_topology(conn, topo, "/")
        wp = start_worker_process(tmp_path, amqp_url=node.amqp_url, vhost="/",
                                  worker_id="ct-1", specs=[spec])
        await wait_consuming(wp, "jobs")
        ledger = Ledger()
        async with AsyncProducer(settings, topo) as producer:
            # Given a job longer than the broker's consumer_timeout
            ledger.sent.add("long")
            await producer.publish("jobs", {"sleep": LONG_JOB}, job_id="long")
            ledger.confirmed.add("long")
            await wait_until(lambda: "long" in wp.runs(), timeout=10, what="the long job started")
            # When the broker closes the worker's channel for it
            await wait_until(
                lambda: wp.metric("queuewatch_consumer_stops_total", queue="jobs",
                                  cause="consumer_timeout") == 1.0,
                timeout=CLOSE_WITHIN, interval=0.1, what="the consumer_timeout close")
            closed, closed_wall = time.monotonic(), time.time()
            closed_after = round(closed_wall - wp.runs()["long"][0], 1)
            # Then it consumes again within seconds, and 20 later jobs are all done
            await wait_until(lambda: wp.metric("queuewatch_consumer_live", queue="jobs") == 1.0,
                             timeout=RESUME_WITHIN, interval=0.05, what="consuming again")
            live_after = elapsed_since(closed)
            later = [f"later-{i}" for i in range(20)]
            for jid in later:
                ledger.sent.add(jid)
                await producer.publish("jobs", {"sleep": 0}, job_id=jid)
                ledger.confirmed.add(jid)
        await wait_until(lambda: set(later) <= set(wp.runs("done")), timeout=RESUME_WITHIN,
                         what="the 20 later jobs")
        first_done = round(min(min(wp.runs("done")[j]) for j in later) - closed_wall, 2)
        # And the long job's first run finishes; its redelivery is skipped as a duplicate
        await wait_until(lambda: "long" in wp.runs("done"), timeout=LONG_JOB + 10,
                         what="the long job's first run done")
        await wait_until(
            lambda: wp.metric("queuewatch_jobs_total", queue="jobs", outcome="duplicate") == 1.0,
            timeout=10, what="the redelivery skipped as a duplicate")
        assert await depth(conn, "jobs") == 0
        rc = await asyncio.to_thread(wp.terminate)
        await conn.close()
    finally:
        if wp is not None and wp.proc.poll() is None:
            wp.proc.kill()
        await asyncio.to_thread(node.close)
    ledger.record_received(wp.runs("done"))
    runs = wp.runs()
    err = wp.stderr()
    said, again = log_time(err, "consumer_timeout of"), log_time(err, "consuming 'jobs' again")
    logged = None if said is None or again is None else round(again - said, 3)
    with capsys.disabled():
        print(f"\n[{queue_type}] consumer_timeout: channel closed {closed_after}s after the long job started; "
              f"consuming again {logged}s after the close (worker log), seen live "
              f"{live_after}s after the close was seen; first later job done {first_done}s "
              "after it")
    assert ledger.lost == set() and ledger.unexpected == set(), ledger.summary()
    assert len(runs["long"]) == 1 and all(len(runs[j]) == 1 for j in later), runs
    assert live_after <= RESUME_WITHIN and first_done <= RESUME_WITHIN
    assert logged is not None and 0 <= logged <= RESUME_WITHIN
    # And it said what happened and what to change, once
    lines = [ln for ln in err.splitlines() if "consumer_timeout of" in ln]
    assert len(lines) == 1, err[-3000:]
    assert "10s" in lines[0] and "long (running" in lines[0] and "raise consumer_timeout" in lines[0]
    # And SIGTERM ended it cleanly
    assert rc == 0, err[-3000:]
    assert "Traceback" not in err and "Task was destroyed" not in err, err[-3000:]

"""Jobs do not stop when the job events stream takes no writes (``events_hold``).

The stream is stood in for by a classic queue of the same name that refuses every publish
(``x-max-length = 0``, ``reject-publish``): the broker answers each events batch with a
nack, as a stream without a writable majority answers with nothing. The producer's
``publish`` and the worker's ack wait at most ``events_hold`` once, then go on without
waiting; the events stay queued and are on record once the stream takes writes again.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from queuewatch.jobs import Jobs, JobState
from queuewatch.producer import AsyncProducer, Producer
from queuewatch.producer.sync import FAILING_EVENTS_WAIT
from queuewatch.topology import QueueSpec
from queuewatch.worker import Job, Worker
from tests.helpers import declare, wait_until
from tests.workers import running

HOLD = 1.0


async def test_a_stream_that_takes_no_writes_holds_jobs_once_then_the_record_catches_up(
        connection, settings, vhost, caplog):
    held = replace(settings, events_stream="qwt.events.refusing", events_hold=HOLD)
    topo = await declare(connection, vhost, QueueSpec("jobs"), delay_levels=1)
    channel = await connection.channel()
    blocker = await channel.declare_queue(
        held.events_stream, durable=True,
        arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    worker = Worker(held, topo, worker_id="w-hold")
    done: list[str] = []

    @worker.job("jobs")
    async def handle(job: Job) -> dict[str, str]:
        done.append(job.job_id)
        return {"id": job.job_id}

    async with running(worker), AsyncProducer(held, topo) as producer:
        # When the stream refuses, the first publish waits events_hold, no longer
        started = time.monotonic()
        await producer.publish("jobs", {}, job_id="held-0")
        first = time.monotonic() - started
        # Then the next ones do not wait at all, and the worker runs and acks every job
        started = time.monotonic()
        for i in range(1, 20):
            await producer.publish("jobs", {}, job_id=f"held-{i}")
        rest = time.monotonic() - started
        await wait_until(lambda: len(done) == 20, timeout=HOLD * 4 + 10, what="all 20 jobs run")
        await wait_until(lambda: worker.recorder is not None and worker.recorder.held_out >= 20,
                         timeout=HOLD * 4, what="the worker's outcomes held out")
        assert producer.recorder is not None and producer.recorder.held_out == 20
        assert producer.recorder.pending >= 20  # nothing dropped: still queued
        q = await channel.declare_queue("jobs", passive=True)
        assert q.declaration_result.message_count == 0  # every job acked
        # When the stream takes writes again (the refusing queue replaced by the stream)
        await blocker.delete(if_unused=False, if_empty=False)
        # Then every event held in memory reaches the record, and status tells the truth
        await wait_until(lambda: producer.recorder is not None and producer.recorder.pending == 0
                         and worker.recorder is not None and worker.recorder.pending == 0,
                         timeout=30, what="the held events recorded")
        async with Jobs(held) as jobs:
            states = [(await jobs.status(f"held-{i}")).state for i in range(20)]
    assert HOLD * 0.9 <= first < HOLD + 5, first
    assert rest < HOLD * 5, rest  # 19 publishes: none waited a whole hold
    assert states == [JobState.SUCCEEDED] * 20, states
    assert "not confirmed within events_hold" in caplog.text
    assert "confirmed again" in caplog.text
    await channel.close()
    await asyncio.sleep(0)


async def test_the_sync_producer_publishes_on_while_the_stream_refuses(
        connection, settings, vhost, caplog):
    held = replace(settings, events_stream="qwt.events.refusing", events_hold=HOLD)
    topo = await declare(connection, vhost, QueueSpec("jobs"), delay_levels=1)
    channel = await connection.channel()
    await channel.declare_queue(held.events_stream, durable=True,
                                arguments={"x-max-length": 0, "x-overflow": "reject-publish"})

    def publish_all() -> float:
        started = time.monotonic()
        with Producer(held, topo) as producer:
            for i in range(10):
                producer.publish("jobs", {}, job_id=f"sync-{i}")
        return time.monotonic() - started

    took = await asyncio.to_thread(publish_all)
    q = await channel.declare_queue("jobs", passive=True)
    assert q.declaration_result.message_count == 10  # every job confirmed and queued
    assert took < HOLD + 10 * FAILING_EVENTS_WAIT + 5, took
    assert "could not record 1 job events" in caplog.text
    await channel.close()

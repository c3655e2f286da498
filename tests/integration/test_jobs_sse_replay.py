"""The live event stream (SSE) of a job that died and was replayed out of its DLQ: the replay
records ``replayed`` after its copy is confirmed, so a quick worker's ``started`` and
``succeeded`` of the copy reach the stream first. A client must still see the job's life in
its real order, ending with ``succeeded`` (the state ``GET /jobs/{id}`` gives), not with
``replayed``."""

from __future__ import annotations

import asyncio
import json

import pytest

from queuewatch.dlq import DeadLetterQueue
from queuewatch.jobs import JobFailed, Jobs
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec, RetryPolicy
from queuewatch.worker import Job, Worker
from tests.helpers import declare
from tests.jobs_http import SseEvent, served, sse_events
from tests.workers import running


async def test_sse_of_a_replayed_job_ends_with_its_success(connection, mgmt, settings, vhost):
    # Given a job that died on its one attempt, a fixed handler, and a client streaming the
    # job's events from the start
    topo = await declare(connection, vhost, QueueSpec("jobs", retry=RetryPolicy(max_attempts=1)))
    fixed = asyncio.Event()
    worker = Worker(settings, topo)

    @worker.job("jobs")
    async def handle(job: Job) -> str:
        if not fixed.is_set():
            raise RuntimeError("bug")
        return "ok"

    async with Jobs(settings) as jobs, running(worker), served(jobs) as (_app, http), \
            AsyncProducer(settings, topo) as producer:
        got: list[SseEvent] = []

        async def read() -> None:
            async for event in sse_events(http, "/events?job=phoenix"):
                got.append(event)
                if len(got) >= 7:
                    return

        reader = asyncio.create_task(read())
        await producer.publish("jobs", {}, job_id="phoenix")
        with pytest.raises(JobFailed):
            await jobs.result("phoenix", timeout=15)
        fixed.set()
        # When it is replayed (message by message: the replay records "replayed")
        result = await DeadLetterQueue(connection, mgmt, settings, "jobs.dlq").replay(
            via_shovel=False)
        assert result.replayed == 1
        assert await jobs.result("phoenix", timeout=15) == "ok"
        await asyncio.wait_for(reader, 20)
        # (the stream itself held the copy's run before its replayed: the case at hand)
        stored = [e.kind for e in jobs.index.events_of("phoenix")]
    # Then the client saw the job's life in its real order, ending with its success
    kinds = [e.event for e in got]
    assert kinds == ["accepted", "started", "attempt_failed", "dead_lettered", "replayed",
                     "started", "succeeded"], (kinds, stored)
    assert [json.loads(e.data)["kind"] for e in got] == kinds

"""A ledger of retried jobs: every job that fails a few times with jittered backoff succeeds
exactly once, and none is lost on the way through the delay levels and due queues.

Written after RabbitMQ's dead-letter cycle detection was found to drop a retry whose path
revisited a delay level or its due queue (see docs/jobs.md): a retry path depends on the
delays drawn, so this publishes many jobs with random failure counts and the default jitter
and checks the ledger, on a classic and a quorum queue, with a capped queue beside them."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import pytest

from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec, RetryPolicy
from queuewatch.worker import Job, Worker
from tests.helpers import declare, depth
from tests.workers import running

JOBS = 150


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_jobs_retried_with_jitter_succeed_exactly_once(connection, settings, vhost, queue_type):
    # Given jobs that each fail their first 0-3 runs, retried after 1, 2, 4 s with up to +50%
    # jitter (so retry paths through the levels vary: 1 s then 3 s, 2 s then 5 s, ...)
    retry = RetryPolicy(max_attempts=5, backoff_initial=1, backoff_multiplier=2, jitter=0.5)
    spec = QueueSpec("jobs", retry=retry, queue_type=queue_type,
                     max_priority=0 if queue_type == "quorum" else 10)
    topo = await declare(connection, vhost, spec, QueueSpec("capped", max_length=1),
                         delay_levels=4)
    rng = random.Random(7)
    fails = {f"job-{i}": rng.randint(0, 3) for i in range(JOBS)}
    runs: Counter[str] = Counter()
    succeeded: Counter[str] = Counter()
    worker = Worker(settings, topo, concurrency=20)

    @worker.job("jobs")
    async def flaky(job: Job) -> None:
        runs[job.job_id] += 1
        if job.attempt <= fails[job.job_id]:
            raise RuntimeError(f"boom {job.attempt}")
        succeeded[job.job_id] += 1

    async with running(worker), AsyncProducer(settings, topo) as producer:
        for job_id in fails:
            await producer.publish("jobs", {}, job_id=job_id)
        # When they have had time for every retry (at most 1.5 + 3 + 6 s of backoff)
        deadline = time.monotonic() + 45
        while len(succeeded) < JOBS and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    # Then each succeeded once, after exactly its failures; none lost, none dead-lettered
    lost = set(fails) - set(succeeded)
    doubled = {j for j, n in succeeded.items() if n > 1}
    assert (len(lost), len(doubled)) == (0, 0), (sorted(lost)[:10], sorted(doubled)[:10])
    assert {j: runs[j] for j in fails} == {j: n + 1 for j, n in fails.items()}
    assert await depth(connection, "jobs.dlq") == 0

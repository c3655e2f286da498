"""A run-time limit change applies to the jobs already waiting for a token, not only to the
ones that come after them.

A worker holds a whole prefetch (concurrency x 10 deliveries) and each of those jobs waits in
the limiter, one behind another. Each used to read the limit once, when it started to wait:
after ``queues limit Q 5 --per-key 2 --key payload:customer`` on a queue limited to 3/s, the
waiting jobs (80 over two workers) kept the old limit and started at 5/s, with no per-key
token, for 16 s (measured: 5.0/s in every 2 s window of 14 s; the per-key limit is 2/s).

A first limit, on a queue that had none, applies to the prefetched jobs waiting for a
concurrency slot too: they had passed the limiter while it asked for nothing."""

from __future__ import annotations

import asyncio
import time

import pytest

from queuewatch.events.queuestate import LimitSpec
from queuewatch.operator import limit_queue
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec
from queuewatch.worker import Job, Worker
from tests.helpers import declare, wait_until
from tests.workers import running


@pytest.mark.slow
async def test_a_per_key_limit_set_at_run_time_holds_for_jobs_already_waiting(connection,
                                                                               settings, vhost):
    # Given a queue limited to 3/s, a backlog of one customer's jobs, and two workers whose
    # prefetched jobs wait for tokens
    spec = QueueSpec("waiting", rate_limit=3.0)
    topo = await declare(connection, vhost, spec, delay_levels=1)
    starts: list[float] = []

    def make(worker_id: str) -> Worker:
        worker = Worker(settings, topo, worker_id=worker_id, concurrency=4, metrics=False,
                        idempotency=False)

        @worker.job("waiting")
        async def handle(job: Job) -> None:
            starts.append(time.monotonic())

        return worker

    async with AsyncProducer(settings, topo) as producer:
        for i in range(200):
            await producer.submit("waiting", {"customer": "a"}, job_id=f"a{i}")
        await producer.flush()
    async with running(make("wait-1")), running(make("wait-2")):
        await wait_until(lambda: len(starts) >= 6, timeout=20, what="jobs at 3/s")
        # When a per-customer limit of 2/s is added at run time (queue-wide 5/s)
        await limit_queue(connection, settings, "waiting",
                          LimitSpec(5.0, per_key=2.0, key="payload:customer"))
        await asyncio.sleep(1.5)  # the token that was waiting, and the change reaching both
        mark = time.monotonic()
        await asyncio.sleep(6.0)
        n = sum(1 for t in starts if t >= mark)
    # Then the jobs that were waiting already start at the customer's 2/s, not at 5/s
    rate = n / 6.0
    print(f"after the change: {rate:.2f} jobs/s for a per-key limit of 2 (queue-wide 5)")
    assert rate <= 2.0 * 1.25, rate
    assert rate >= 2.0 * 0.5, rate  # (short of it while the jobs that waited under 3/s drain)


@pytest.mark.slow
async def test_a_limit_turned_off_at_run_time_frees_the_jobs_waiting_for_a_token(connection,
                                                                                 settings, vhost):
    # Given a queue limited to 3/s at run time, a backlog, and a worker whose prefetched jobs
    # wait for tokens
    topo = await declare(connection, vhost, QueueSpec("freed"), delay_levels=1)
    await limit_queue(connection, settings, "freed", LimitSpec(3.0))
    starts: list[float] = []
    worker = Worker(settings, topo, worker_id="freed-1", concurrency=4, metrics=False,
                    idempotency=False)

    @worker.job("freed")
    async def handle(job: Job) -> None:
        starts.append(time.monotonic())

    async with AsyncProducer(settings, topo) as producer:
        for i in range(200):
            await producer.submit("freed", {}, job_id=f"f{i}")
        await producer.flush()
    async with running(worker):
        await wait_until(lambda: len(starts) >= 6, timeout=20, what="jobs at 3/s")
        # When the limit is turned off
        await limit_queue(connection, settings, "freed", LimitSpec())
        # Then the whole backlog runs: no job is left waiting for a token nobody refills
        # (it stopped dead: 0 jobs in the 14 s after the change, the refiller having stopped)
        await wait_until(lambda: len(starts) == 200, timeout=20, what="the backlog, unlimited")


@pytest.mark.slow
async def test_a_first_limit_holds_for_jobs_already_waiting_for_a_slot(connection, settings,
                                                                       vhost):
    # Given an unlimited queue with a backlog, and a worker of 2 slots whose prefetch of 50
    # waits for them (each job takes 0.25 s: 8 jobs/s)
    topo = await declare(connection, vhost, QueueSpec("first"), delay_levels=1)
    starts: list[float] = []
    worker = Worker(settings, topo, worker_id="first-1", concurrency=2, prefetch=50,
                    metrics=False, idempotency=False)

    @worker.job("first")
    async def handle(job: Job) -> None:
        starts.append(time.monotonic())
        await asyncio.sleep(0.25)

    async with AsyncProducer(settings, topo) as producer:
        for i in range(200):
            await producer.submit("first", {}, job_id=f"q{i}")
        await producer.flush()
    async with running(worker):
        await wait_until(lambda: len(starts) >= 6, timeout=20, what="jobs, unlimited")
        # When a limit of 2/s is set at run time
        await limit_queue(connection, settings, "first", LimitSpec(2.0))
        await asyncio.sleep(1.0)  # the change reaching the worker, and the jobs under way
        mark = time.monotonic()
        await asyncio.sleep(6.0)
        n = sum(1 for t in starts if t >= mark)
    # Then the 48 prefetched jobs that waited for a slot start at 2/s too, not at 8/s (they
    # did for 6 s: they had passed the limiter when it asked for nothing)
    rate = n / 6.0
    print(f"after a first limit of 2/s: {rate:.2f} jobs/s")
    assert rate <= 2.0 * 1.25, rate
    assert rate >= 2.0 * 0.5, rate

"""Coalesced acks against the real broker: every delivery settled exactly once whatever
the mix of outcomes, and no ack waits behind a slow job at the head of the channel.

A ``multiple`` ack that covered a delivery not settled here would lose it (acked unrun) or
close the channel (acked twice); an ack held behind a slow job would stall the prefetch. The
ledger and the queue's depth after the worker stops tell both."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import pytest

from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec, RetryPolicy
from queuewatch.worker import Job, NonRetryable, Worker
from tests.helpers import declare, depth, wait_until
from tests.workers import running

JOBS = 1500


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_mixed_outcomes_settle_every_delivery_once(connection, settings, vhost, queue_type):
    # Given jobs that succeed at once, after a random short sleep, fail once (retried), or
    # fail for good (dead-lettered), in a random order
    retry = RetryPolicy(max_attempts=3, backoff_initial=1, backoff_multiplier=1, jitter=0)
    topo = await _jobs_queue(connection, vhost, queue_type, retry=retry, delay_levels=2)
    rng = random.Random(11)
    kinds = {f"job-{i}": rng.choice(["now", "now", "now", "sleep", "retry", "dead"])
             for i in range(JOBS)}
    succeeded: Counter[str] = Counter()
    dead = {j for j, k in kinds.items() if k == "dead"}
    worker = Worker(settings, topo, concurrency=20)

    @worker.job("jobs")
    async def handle(job: Job) -> None:
        kind = kinds[job.job_id]
        if kind == "sleep":
            await asyncio.sleep(rng.random() * 0.02)
        elif kind == "retry" and job.attempt == 1:
            raise RuntimeError("once")
        elif kind == "dead":
            raise NonRetryable("never")
        succeeded[job.job_id] += 1

    async with AsyncProducer(settings, topo) as producer:  # a backlog: jobs end in bursts
        await asyncio.gather(*(producer.publish("jobs", {}, job_id=j) for j in kinds))
    async with running(worker):
        await wait_until(lambda: len(succeeded) == JOBS - len(dead), timeout=60,
                         what="every job that can succeed")
        await wait_until(lambda: _dead_letters(connection, len(dead)), timeout=30,
                         what="the dead letters")
    # When the worker has stopped (its channels closed: the broker requeues what is unacked)
    # Then nothing came back, each job succeeded once, the dead ones are in the DLQ
    doubled = {j for j, n in succeeded.items() if n > 1}
    assert doubled == set()
    assert await depth(connection, "jobs") == 0
    assert await depth(connection, "jobs.dlq") == len(dead)
    print(f"\n{queue_type}: {JOBS + sum(k == 'retry' for k in kinds.values())} deliveries "
          f"settled with {worker.processor.acks.frames} ack frames")


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_a_backlog_of_quick_jobs_is_acked_in_few_frames(connection, settings, vhost,
                                                              queue_type):
    # Given a backlog of quick jobs
    topo = await _jobs_queue(connection, vhost, queue_type)
    ran: Counter[str] = Counter()
    worker = Worker(settings, topo, concurrency=10, prefetch=100)

    @worker.job("jobs")
    async def handle(job: Job) -> None:
        ran[job.job_id] += 1

    async with AsyncProducer(settings, topo) as producer:
        await asyncio.gather(*(producer.publish("jobs", {}, job_id=f"job-{i}")
                               for i in range(JOBS)))
    # When a worker drains it, then stops
    async with running(worker):
        await wait_until(lambda: len(ran) == JOBS, timeout=60, what="every job")
    # Then each ran once, nothing came back, with far fewer ack frames than jobs
    frames = worker.processor.acks.frames
    print(f"\n{queue_type}: {JOBS} jobs acked with {frames} frames")
    assert set(ran.values()) == {1}
    assert await depth(connection, "jobs") == 0
    assert frames < JOBS / 2


async def _jobs_queue(connection, vhost: str, queue_type: str, *,  # type: ignore[no-untyped-def]
                      retry: RetryPolicy | None = None, delay_levels: int = 1):
    """The queue "jobs" of ``queue_type`` (priorities on the classic one, as by default)."""
    spec = QueueSpec("jobs", queue_type=queue_type,
                     max_priority=0 if queue_type == "quorum" else 10,
                     **({"retry": retry} if retry is not None else {}))
    return await declare(connection, vhost, spec, delay_levels=delay_levels)


async def _dead_letters(connection, n: int) -> bool:  # type: ignore[no-untyped-def]
    return await depth(connection, "jobs.dlq") >= n


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_a_slow_job_at_the_head_holds_back_no_other_ack(connection, settings, vhost,
                                                              queue_type):
    # Given a slow job delivered first, then 400 quick ones, with a prefetch of 50: the
    # quick ones can only all run while the slow one does if their acks are written (the
    # broker sends no more than 50 unacked deliveries)
    topo = await _jobs_queue(connection, vhost, queue_type)
    quick: Counter[str] = Counter()
    slow_running = asyncio.Event()
    release = asyncio.Event()
    worker = Worker(settings, topo, concurrency=5, prefetch=50)

    @worker.job("jobs")
    async def handle(job: Job) -> None:
        if job.job_id == "slow":
            slow_running.set()
            await release.wait()
        else:
            quick[job.job_id] += 1

    async with AsyncProducer(settings, topo) as producer:
        await producer.publish("jobs", {}, job_id="slow")
        for i in range(400):
            await producer.publish("jobs", {}, job_id=f"quick-{i}")
    async with running(worker):
        await asyncio.wait_for(slow_running.wait(), 10)
        # When the slow job runs
        started = time.monotonic()
        await wait_until(lambda: len(quick) == 400, timeout=30, what="the quick jobs")
        took = time.monotonic() - started
        # Then every quick job ran (and was acked) while the slow one still runs
        assert not release.is_set()
        assert await depth(connection, "jobs") == 0
        release.set()
        # (the worker's metrics: processor.counts is what happened since the last
        # heartbeat, which takes and resets it every second)
        assert worker.metrics is not None
        done = worker.metrics.registry.get_sample_value
        await wait_until(lambda: done("queuewatch_jobs_total",
                                      {"queue": "jobs", "outcome": "succeeded"}) == 401,
                         timeout=10, what="the slow job's end")
    print(f"\n{queue_type}: 400 quick jobs behind a running slow one in {took:.2f}s")
    assert set(quick.values()) == {1}
    assert await depth(connection, "jobs") == 0

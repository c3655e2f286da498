"""A job the worker does not run because its idempotency key was done already ends with a
status of its own: ``succeeded``, saying it was not run and why, so a caller that waits for
it learns it at once. Before (found on ``./dev demo``, 2026-12-02): such a job was acked
without a word and stayed ``queued`` (or ``scheduled``, when delayed) for good, listed among
the scheduled jobs as ever later, and ``jobs result`` waited until its timeout."""

from __future__ import annotations

import asyncio
from collections import Counter

from queuewatch.jobs import Jobs, JobState
from queuewatch.jobs.timeline import render
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec
from queuewatch.worker import Job, Worker
from tests.helpers import declare, wait_until
from tests.workers import running


async def test_a_job_skipped_for_its_idempotency_key_says_so_and_is_done(connection, settings, vhost):
    topo = await declare(connection, vhost, QueueSpec("jobs"), delay_levels=2)
    effects = Counter[str]()
    worker = Worker(settings, topo)

    @worker.job("jobs")
    async def charge(job: Job) -> dict[str, str]:
        effects[job.payload["order"]] += 1
        return {"charged": job.job_id}

    async with running(worker), AsyncProducer(settings, topo) as producer, Jobs(settings) as jobs:
        # Given a job done for order 7 (idempotency key "order-7")
        await producer.publish("jobs", {"order": "7"}, job_id="pay-1", idempotency_key="order-7")
        assert await jobs.result("pay-1", timeout=15) == {"charged": "pay-1"}
        # When another job with the same key is published, now and delayed, and pay-1 again
        await producer.publish("jobs", {"order": "7"}, job_id="pay-2", idempotency_key="order-7")
        await producer.publish("jobs", {"order": "7"}, job_id="pay-3", idempotency_key="order-7",
                               delay=1)
        await producer.publish("jobs", {"order": "7"}, job_id="pay-1", idempotency_key="order-7")
        # Then each ends at once, succeeded without a result: the charge was made once
        for job_id in ("pay-2", "pay-3"):
            assert await jobs.result(job_id, timeout=15) is None
            status = await jobs.status(job_id)
            assert status.state is JobState.SUCCEEDED, status
            text = render(status)
            assert "not run: its idempotency key 'order-7' was done already" in text, text
        await wait_until(lambda: worker.metrics.registry.get_sample_value(  # type: ignore[union-attr]
            "queuewatch_jobs_total", {"queue": "jobs", "outcome": "duplicate"}) == 3,
            timeout=15, what="three duplicates")
        # And pay-1's second delivery leaves pay-1 as it was: succeeded with its result
        first = await jobs.status("pay-1")
        assert first.state is JobState.SUCCEEDED and first.result == {"charged": "pay-1"}, first
    assert effects == {"7": 1}
    assert (await jobs_scheduled_count(settings)) == 0


async def jobs_scheduled_count(settings) -> int:  # type: ignore[no-untyped-def]
    async with Jobs(settings) as jobs:
        return len(await jobs.scheduled("jobs"))


async def test_webhooks_say_each_job_once_a_skipped_duplicate_included(connection, settings, vhost):
    from dataclasses import replace

    from queuewatch.jobs.webhook_service import WebhookService
    from queuewatch.jobs.webhooks import verify
    from tests.integration.test_webhooks import SECRET, webhooks_spec
    from tests.jobs_http import Receiver

    settings = replace(settings, webhook_secret=SECRET)
    with Receiver() as receiver:
        topo = await declare(connection, vhost, QueueSpec("jobs", webhook=receiver.url),
                             webhooks_spec(3), delay_levels=2)
        worker = Worker(settings, topo)

        @worker.job("jobs")
        async def charge(job: Job) -> dict[str, str]:
            return {"charged": job.job_id}

        async with WebhookService(settings, topo), running(worker), \
                AsyncProducer(settings, topo) as producer:
            # Given pay-1 done for key order-7, then pay-2 with that key, and pay-1 again
            await producer.publish("jobs", {}, job_id="pay-1", idempotency_key="order-7")
            await wait_until(lambda: len(receiver.accepted()) >= 1, timeout=30, what="pay-1's hook")
            await producer.publish("jobs", {}, job_id="pay-2", idempotency_key="order-7")
            await producer.publish("jobs", {}, job_id="pay-1", idempotency_key="order-7")
            await wait_until(lambda: len(receiver.accepted()) >= 2, timeout=30, what="pay-2's hook")
            await asyncio.sleep(3)  # time for a second one of pay-1 to show up
    # Then one webhook each: pay-2's says succeeded without a result, pay-1 gets no second one
    bodies = [verify(SECRET, d.body, d.headers) for d in receiver.accepted()]
    assert sorted(b["job_id"] for b in bodies) == ["pay-1", "pay-2"], bodies
    pay2 = next(b for b in bodies if b["job_id"] == "pay-2")
    assert pay2["state"] == "succeeded" and pay2.get("result") is None, pay2

"""The worker on the real broker: success, retries with backoff, DLQ metadata, non-retryable
and malformed jobs, poison messages, idempotency, time limits and rate limits."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import aio_pika
import pytest

from queuewatch import envelope
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec, RetryPolicy, Topology
from queuewatch.worker import Job, NonRetryable, Worker, settle
from tests.helpers import declare, depth, wait_until
from tests.workers import dead_letters, running

FAST_RETRY = RetryPolicy(max_attempts=3, backoff_initial=1, backoff_multiplier=2, jitter=0)


async def test_jobs_succeed_and_are_acked(connection, settings, vhost):
    topo = await declare(connection, vhost, QueueSpec("jobs"))
    seen: list[Job] = []
    worker = Worker(settings, topo, concurrency=4)

    @worker.job("jobs")
    async def handle(job: Job) -> None:
        seen.append(job)

    async with running(worker), AsyncProducer(settings, topo) as producer:
        for i in range(20):
            await producer.submit("jobs", {"i": i}, job_id=f"j{i}", priority=2)
        await producer.flush()
        await wait_until(lambda: len(seen) == 20, what="20 jobs")
    assert sorted(j.payload["i"] for j in seen) == list(range(20))
    job = next(j for j in seen if j.job_id == "j3")
    assert job.queue == "jobs" and job.attempt == 1 and job.priority == 2
    assert job.idempotency_key == "j3" and job.published_ms is not None
    assert await depth(connection, "jobs") == 0
    sample = worker.metrics.registry.get_sample_value  # type: ignore[union-attr]
    assert sample("queuewatch_jobs_total", {"queue": "jobs", "outcome": "succeeded"}) == 20
    assert sample("queuewatch_job_duration_seconds_count", {"queue": "jobs"}) == 20
    assert sample("queuewatch_jobs_in_progress", {"queue": "jobs"}) == 0


async def test_fail_twice_then_succeed_runs_three_times_with_backoff(connection, settings, vhost):
    # Given a handler that fails on its first two runs, and backoff 1 s then 2 s
    topo = await declare(connection, vhost, QueueSpec("jobs", retry=FAST_RETRY), delay_levels=4)
    runs: list[tuple[int, float]] = []
    worker = Worker(settings, topo)

    @worker.job("jobs")
    async def flaky(job: Job) -> None:
        runs.append((job.attempt, time.monotonic()))
        if job.attempt < 3:
            raise RuntimeError(f"boom {job.attempt}")

    async with running(worker), AsyncProducer(settings, topo) as producer:
        await producer.publish("jobs", {"x": 1}, job_id="flaky")
        await wait_until(lambda: len(runs) >= 3, timeout=10, what="three runs")
        await asyncio.sleep(1.5)  # would a fourth run happen?
    # Then it ran exactly three times, attempts 1..3, waiting about 1 s and 2 s between runs
    assert [a for a, _ in runs] == [1, 2, 3]
    gap1, gap2 = runs[1][1] - runs[0][1], runs[2][1] - runs[1][1]
    assert 0.95 <= gap1 < 2.0 and 1.95 <= gap2 < 3.0, (gap1, gap2)
    assert await depth(connection, "jobs.dlq") == 0
    sample = worker.metrics.registry.get_sample_value  # type: ignore[union-attr]
    assert sample("queuewatch_job_retries_total", {"queue": "jobs"}) == 2


@pytest.mark.parametrize(("multiplier", "queue_type"), [(1, "classic"), (3, "classic"), (3, "quorum")])
async def test_retries_that_pass_the_same_delay_queue_twice_are_not_dropped(
        connection, settings, vhost, multiplier, queue_type):
    """RabbitMQ drops a message dead-lettered into a queue its x-death names (cycle detection):
    retries after 1 s and 1 s (level 0 twice), or 1 s and 3 s (level 0 again after level 1),
    and any second retry (the due queue twice) were lost before the worker cleared queuewatch's
    own x-death entries from its retry copies."""
    retry = RetryPolicy(max_attempts=4, backoff_initial=1, backoff_multiplier=multiplier, jitter=0)
    spec = QueueSpec("jobs", retry=retry, queue_type=queue_type,
                     max_priority=0 if queue_type == "quorum" else 10)
    topo = await declare(connection, vhost, spec, delay_levels=4)
    runs: list[int] = []
    worker = Worker(settings, topo)

    @worker.job("jobs")
    async def flaky(job: Job) -> None:
        runs.append(job.attempt)
        if job.attempt < 4:
            raise RuntimeError(f"boom {job.attempt}")

    async with running(worker), AsyncProducer(settings, topo) as producer:
        await producer.publish("jobs", {}, job_id="flaky")
        # delays 1+1+1 s or 1+3+9 s (capped to the 15 s the 4 levels allow)
        await wait_until(lambda: len(runs) >= 4, timeout=40, what="four runs")
    assert runs == [1, 2, 3, 4]
    assert await depth(connection, "jobs.dlq") == 0


async def test_always_failing_job_lands_in_dlq_with_metadata(connection, settings, vhost):
    retry = RetryPolicy(max_attempts=2, backoff_initial=1, jitter=0)
    topo = await declare(connection, vhost, QueueSpec("jobs", retry=retry), delay_levels=4)
    worker = Worker(settings, topo, worker_id="w-test")

    @worker.job("jobs")
    async def broken(job: Job) -> None:
        raise ValueError("database said no")

    before = envelope.now_ms()
    async with running(worker), AsyncProducer(settings, topo) as producer:
        await producer.publish("jobs", {"order": 7}, job_id="doomed", priority=4,
                               headers={"tenant": "acme"})
        [dead] = await dead_letters(connection, "jobs", 1)
    h = dead.headers
    assert dead.message_id == "doomed" and json.loads(dead.body) == {"order": 7}
    assert dead.priority == 4 and h["tenant"] == "acme"
    assert h[envelope.H_DEAD_REASON] == "failed"
    assert h[envelope.H_ERROR_TYPE] == "ValueError"
    assert h[envelope.H_ERROR_MESSAGE] == "database said no"
    assert "database said no" in h[envelope.H_TRACEBACK] and "broken" in h[envelope.H_TRACEBACK]
    assert h[envelope.H_ATTEMPT] == 2
    assert before <= h[envelope.H_FIRST_FAILED_MS] < h[envelope.H_LAST_FAILED_MS] <= h[envelope.H_DEAD_AT_MS]
    assert h[envelope.H_LAST_FAILED_MS] - h[envelope.H_FIRST_FAILED_MS] >= 900
    assert h[envelope.H_ORIGINAL_EXCHANGE] == "" and h[envelope.H_ORIGINAL_ROUTING_KEY] == "jobs"
    assert h[envelope.H_ORIGINAL_QUEUE] == "jobs" and h[envelope.H_WORKER] == "w-test"
    assert envelope.H_TARGET not in h
    assert await depth(connection, "jobs") == 0


async def test_non_retryable_goes_straight_to_dlq(connection, settings, vhost):
    topo = await declare(connection, vhost, QueueSpec("jobs", retry=FAST_RETRY), delay_levels=4)
    runs = Counter[str]()
    worker = Worker(settings, topo)

    @worker.job("jobs")
    async def refuse(job: Job) -> None:
        runs[job.job_id] += 1
        raise NonRetryable("card declined")

    async with running(worker), AsyncProducer(settings, topo) as producer:
        await producer.publish("jobs", {}, job_id="nr")
        [dead] = await dead_letters(connection, "jobs", 1)
    assert runs == {"nr": 1}
    assert dead.headers[envelope.H_DEAD_REASON] == "non-retryable"
    assert dead.headers[envelope.H_ERROR_MESSAGE] == "card declined"


async def test_malformed_payloads_dead_letter_and_worker_keeps_running(connection, settings, vhost):
    # Given a worker with a 1 KiB payload limit
    topo = await declare(connection, vhost, QueueSpec("jobs"))
    good: list[str] = []
    worker = Worker(settings, topo, max_payload_bytes=1024)

    @worker.job("jobs")
    async def handle(job: Job) -> None:
        good.append(job.job_id)

    bad = {
        "not-json": (b"{nope", "application/json"),
        "bad-utf8": (b"\xff\xfe{}", "application/json"),
        "bad-text": (b"\xff", "text/plain"),
        "wrong-type": (b"<a/>", "application/xml"),
        "oversized": (json.dumps("x" * 2000).encode(), "application/json"),
    }
    async with running(worker):
        channel = await connection.channel()
        for jid, (body, ctype) in bad.items():
            await channel.default_exchange.publish(
                aio_pika.Message(body, content_type=ctype, message_id=jid), routing_key="jobs")
        async with AsyncProducer(settings, topo) as producer:
            await producer.publish("jobs", {"ok": True}, job_id="fine")
        dead = await dead_letters(connection, "jobs", len(bad))
        await wait_until(lambda: good == ["fine"], what="the good job")
        await channel.close()
    # Then each bad message is in the DLQ with reason "malformed" and a clear message
    reasons = {m.message_id: m.headers for m in dead}
    assert set(reasons) == set(bad)
    assert all(h[envelope.H_DEAD_REASON] == "malformed" for h in reasons.values())
    assert "not JSON" in reasons["not-json"][envelope.H_ERROR_MESSAGE]
    assert "not UTF-8" in reasons["bad-utf8"][envelope.H_ERROR_MESSAGE]
    assert "not UTF-8" in reasons["bad-text"][envelope.H_ERROR_MESSAGE]
    assert "unsupported content type" in reasons["wrong-type"][envelope.H_ERROR_MESSAGE]
    assert "exceeds the limit of 1024" in reasons["oversized"][envelope.H_ERROR_MESSAGE]


async def test_poison_message_does_not_block_others(connection, settings, vhost):
    retry = RetryPolicy(max_attempts=3, backoff_initial=1, jitter=0)
    topo = await declare(connection, vhost, QueueSpec("jobs", retry=retry), delay_levels=4)
    done: list[str] = []
    worker = Worker(settings, topo, concurrency=2, prefetch=2)

    @worker.job("jobs")
    async def handle(job: Job) -> None:
        if job.payload.get("poison"):
            raise RuntimeError("poison")
        await asyncio.sleep(0.005)
        done.append(job.job_id)

    async with AsyncProducer(settings, topo) as producer:
        await producer.publish("jobs", {"poison": True}, job_id="poison")
        for i in range(100):
            await producer.submit("jobs", {"i": i}, job_id=f"ok{i}")
        await producer.flush()
    async with running(worker):
        # Then the 100 jobs behind the poison one finish before it has used up its attempts
        await wait_until(lambda: len(done) == 100, timeout=10, what="jobs behind the poison")
        assert await depth(connection, "jobs.dlq") == 0
        [dead] = await dead_letters(connection, "jobs", 1)
    assert dead.message_id == "poison" and dead.headers[envelope.H_ATTEMPT] == 3


async def test_same_job_id_three_times_has_one_side_effect(connection, settings, vhost):
    topo = await declare(connection, vhost, QueueSpec("jobs"))
    effects = Counter[str]()
    worker = Worker(settings, topo)

    @worker.job("jobs")
    async def charge(job: Job) -> None:
        effects[job.job_id] += 1

    async with running(worker), AsyncProducer(settings, topo) as producer:
        for _ in range(3):
            await producer.publish("jobs", {"amount": 5}, job_id="pay-1")
        await producer.publish("jobs", {"amount": 5}, job_id="pay-2", idempotency_key="pay-1")
        await producer.publish("jobs", {"amount": 5}, job_id="pay-3")
        await wait_until(lambda: worker.metrics.registry.get_sample_value(  # type: ignore[union-attr]
            "queuewatch_jobs_total", {"queue": "jobs", "outcome": "duplicate"}) == 3,
            what="three duplicates")
        await wait_until(lambda: effects["pay-3"] == 1, what="pay-3")
    assert effects == {"pay-1": 1, "pay-3": 1}
    assert await depth(connection, "jobs") == 0


async def test_time_limit_cancels_and_dead_letters_as_timeout(connection, settings, vhost):
    retry = RetryPolicy(max_attempts=2, backoff_initial=1, jitter=0)
    topo = await declare(connection, vhost, QueueSpec("jobs", retry=retry, timeout=0.2),
                         delay_levels=4)
    runs: list[int] = []
    worker = Worker(settings, topo)

    @worker.job("jobs")
    async def slow(job: Job) -> None:
        runs.append(job.attempt)
        await asyncio.sleep(10)

    async with running(worker), AsyncProducer(settings, topo) as producer:
        await producer.publish("jobs", {}, job_id="slow")
        [dead] = await dead_letters(connection, "jobs", 1)
    assert runs == [1, 2]
    assert dead.headers[envelope.H_DEAD_REASON] == "timeout"
    assert dead.headers[envelope.H_ERROR_TYPE] == "TimeoutError"


async def test_rate_limit_per_queue(connection, settings, vhost):
    topo = await declare(connection, vhost, QueueSpec("jobs", rate_limit=10), QueueSpec("free"))
    stamps: dict[str, list[float]] = {"jobs": [], "free": []}
    worker = Worker(settings, topo, concurrency=20)

    @worker.job("jobs")
    async def limited(job: Job) -> None:
        stamps["jobs"].append(time.monotonic())

    @worker.job("free")
    async def unlimited(job: Job) -> None:
        stamps["free"].append(time.monotonic())

    async with running(worker), AsyncProducer(settings, topo) as producer:
        for i in range(21):
            await producer.submit("jobs", {"i": i})
            await producer.submit("free", {"i": i})
        await producer.flush()
        await wait_until(lambda: len(stamps["jobs"]) == 21, timeout=10, what="limited jobs")
    # Then 21 jobs at 10/s span about 2 s, while the unlimited queue is not held back
    span = stamps["jobs"][-1] - stamps["jobs"][0]
    assert 1.8 <= span < 4.0, span
    assert len(stamps["free"]) == 21 and stamps["free"][-1] < stamps["jobs"][-1]


async def test_graceful_stop_finishes_in_flight_and_leaves_the_rest(connection, settings, vhost):
    topo = await declare(connection, vhost, QueueSpec("jobs"))
    finished: list[str] = []
    started = asyncio.Event()
    worker = Worker(settings, topo, concurrency=2, prefetch=4)

    @worker.job("jobs")
    async def slow(job: Job) -> None:
        started.set()
        await asyncio.sleep(0.5)
        finished.append(job.job_id)

    async with AsyncProducer(settings, topo) as producer:
        for i in range(10):
            await producer.submit("jobs", {}, job_id=f"j{i}")
        await producer.flush()
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 10)
    # When the worker is stopped while two jobs run
    worker.stop()
    await asyncio.wait_for(task, 10)
    # Then the running jobs finished and every other job is back in the queue
    assert len(finished) == 2
    assert await depth(connection, "jobs") == 8


async def test_unknown_queue_in_topology_is_still_consumed(connection, settings, vhost):
    await declare(connection, vhost, QueueSpec("jobs"))
    worker = Worker(settings, Topology(delay_levels=8), idempotency=False)
    seen: list[str] = []

    @worker.job("jobs")
    async def handle(job: Job) -> None:
        seen.append(job.job_id)

    async with running(worker), AsyncProducer(settings, 8) as producer:
        await producer.publish("jobs", "hello", job_id="a")
        await wait_until(lambda: seen == ["a"], what="job")


async def test_missing_queue_keeps_worker_retrying_not_crashing(settings, connection, vhost):
    worker = Worker(settings, Topology(delay_levels=8))

    @worker.job("absent")
    async def handle(job: Job) -> None: ...

    task = asyncio.create_task(worker.run())
    # Then it keeps running, says why it does not consume, and is not "connected"
    await wait_until(lambda: worker.consumer_status()[0].cause == "queue_missing", timeout=10,
                     what="the consumer's state names the missing queue")
    await asyncio.sleep(1.0)
    assert not worker.connected.is_set() and not task.done()
    [status] = worker.consumer_status()
    assert status.queue == "absent" and not status.live and "absent" in (status.reason or "")
    worker.stop()
    await asyncio.wait_for(task, 10)


async def test_unconfirmed_retry_copy_requeues_the_original(connection, settings, vhost, mgmt):
    # Given a worker that believes in 6 delay levels while only 4 are declared, so the retry
    # copy goes to an exchange that does not exist (the broker closes the publish channel)
    await declare(connection, vhost, QueueSpec("jobs", retry=FAST_RETRY), delay_levels=4)
    worker = Worker(settings, Topology(queues=(QueueSpec("jobs", retry=FAST_RETRY),),
                                       delay_levels=6))
    runs = Counter[str]()

    @worker.job("jobs")
    async def handle(job: Job) -> None:
        runs[job.job_id] += 1
        if job.job_id == "failing":
            raise RuntimeError("needs a retry")

    async with running(worker), AsyncProducer(settings, 4) as producer:
        await producer.publish("jobs", {}, job_id="failing")
        await wait_until(lambda: runs["failing"] >= 2, timeout=10, what="the job run again")
        # Then the job was requeued rather than dropped, and other jobs still run
        await producer.publish("jobs", {}, job_id="fine")
        await wait_until(lambda: runs["fine"] == 1, timeout=10, what="another job")
    assert await depth(connection, "jobs") == 1  # the failing job is back in the queue


async def test_a_job_whose_retry_copy_is_refused_waits_without_its_slot(connection, settings,
                                                                        vhost, monkeypatch):
    # Given a worker of one slot whose retry copies go to an exchange that does not exist (it
    # believes in 6 delay levels, 4 are declared), and a pause of 3 s before a job whose
    # copy was refused goes back to its queue
    monkeypatch.setattr(settle, "REQUEUE_PAUSE", 3.0)
    await declare(connection, vhost, QueueSpec("jobs", retry=FAST_RETRY), delay_levels=4)
    worker = Worker(settings, Topology(queues=(QueueSpec("jobs", retry=FAST_RETRY),),
                                       delay_levels=6), concurrency=1)
    runs: dict[str, list[float]] = {}

    @worker.job("jobs")
    async def handle(job: Job) -> None:
        runs.setdefault(job.job_id, []).append(time.monotonic())
        if job.job_id == "failing":
            raise RuntimeError("needs a retry")

    async with running(worker), AsyncProducer(settings, 4) as producer:
        await producer.publish("jobs", {}, job_id="failing")
        await wait_until(lambda: "failing" in runs, timeout=10, interval=0.01,
                         what="the failing job")
        # When other jobs come while it waits to go back
        sent = time.monotonic()
        for i in range(5):
            await producer.publish("jobs", {}, job_id=f"fine{i}")
        await wait_until(lambda: all(f"fine{i}" in runs for i in range(5)), timeout=10,
                         what="the other jobs")
        # Then they run at once: the pause holds no slot (they waited 3 s for it)
        waited = max(runs[f"fine{i}"][0] for i in range(5)) - sent
        assert waited < 1.0, waited
        assert len(runs["failing"]) == 1  # still in its pause, not acked
        # And the failing job is not lost: it goes back and runs again
        await wait_until(lambda: len(runs["failing"]) >= 2, timeout=10, what="a second run")
        assert runs["failing"][1] - runs["failing"][0] >= 3.0


async def test_without_a_dlq_an_exhausted_job_is_dropped_not_requeued_forever(connection, settings, vhost):
    # Given a queue declared with dlq = false and two attempts per job
    retry = RetryPolicy(max_attempts=2, backoff_initial=1, jitter=0)
    topo = await declare(connection, vhost, QueueSpec("nodlq", retry=retry, dlq=False), delay_levels=3)
    runs = Counter[str]()
    worker = Worker(settings, topo, concurrency=1)

    @worker.job("nodlq")
    async def handle(job: Job) -> None:
        runs[job.job_id] += 1
        raise RuntimeError("always")

    async with running(worker), AsyncProducer(settings, topo) as producer:
        await producer.publish("nodlq", {"x": 1}, job_id="doomed")
        # When it has used up both attempts
        await wait_until(lambda: runs["doomed"] >= 2, timeout=10, what="two attempts")
        await asyncio.sleep(3)
        # Then it ran exactly twice and is gone (dropped, as dlq = false chose), not cycling
        assert runs["doomed"] == 2
        assert await depth(connection, "nodlq") == 0
        dropped = worker.metrics.registry.get_sample_value(  # type: ignore[union-attr]
            "queuewatch_jobs_total", {"queue": "nodlq", "outcome": "dead_lettered"})
        assert dropped == 1

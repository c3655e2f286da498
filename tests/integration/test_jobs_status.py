"""Fire and eventually confirm, on the real broker: a job's status by id, its per-attempt
timeline and its result, read from the job events stream."""

from __future__ import annotations

import asyncio
import json
import subprocess
from dataclasses import replace

import pytest

from queuewatch.jobs import JobFailed, Jobs, JobsClient, JobState, JobUnknown, ResultTimeout
from queuewatch.producer import AsyncProducer, Producer
from queuewatch.topology import QueueSpec, RetryPolicy
from queuewatch.worker import Job, Worker
from tests.helpers import declare
from tests.workers import QUEUEWATCH, running

FAST_RETRY = RetryPolicy(max_attempts=3, backoff_initial=1, backoff_multiplier=1, jitter=0)


async def test_fail_twice_then_succeed_has_three_attempts_and_a_result(connection, settings, vhost):
    # Given a handler that fails on its first two runs and returns a value on the third
    topo = await declare(connection, vhost, QueueSpec("jobs", retry=FAST_RETRY), delay_levels=4)
    worker = Worker(settings, topo, worker_id="w-flaky")

    @worker.job("jobs")
    async def flaky(job: Job) -> dict[str, int]:
        if job.attempt < 3:
            raise RuntimeError(f"boom {job.attempt}")
        return {"answer": 42, "attempt": job.attempt}

    async with Jobs(settings) as jobs, running(worker), AsyncProducer(settings, topo) as producer:
        await producer.publish("jobs", {"x": 1}, job_id="flaky-1")
        # When the service asks right after publish, the job is known (queued or further)
        first = await jobs.status("flaky-1")
        assert first.state in (JobState.QUEUED, JobState.RUNNING, JobState.RETRYING), first
        # Then result() waits for the outcome and returns the handler's value
        assert await jobs.result("flaky-1", timeout=20) == {"answer": 42, "attempt": 3}
        status = await jobs.status("flaky-1")
    assert status.state is JobState.SUCCEEDED and status.queue == "jobs"
    assert [a.number for a in status.attempts] == [1, 2, 3]
    assert [a.outcome for a in status.attempts] == ["failed", "failed", "succeeded"]
    assert [a.error for a in status.attempts[:2]] == ["boom 1", "boom 2"]
    assert all(a.error_type == "RuntimeError" and "Traceback" in (a.traceback or "")
               for a in status.attempts[:2])
    assert all(a.worker.name == "w-flaky" and a.duration is not None for a in status.attempts)
    kinds = [e.kind for e in status.events]
    assert kinds == ["accepted", "started", "attempt_failed", "retry_scheduled", "started",
                     "attempt_failed", "retry_scheduled", "started", "succeeded"], kinds
    # And the CLI tells the same (--json), and says unknown for an id nobody published
    shown = _cli(settings, vhost, "jobs", "show", "flaky-1", "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["state"] == "succeeded" and data["result"] == {"answer": 42, "attempt": 3}
    assert [(a["attempt"], a["outcome"], a["error"]) for a in data["attempts"]] == [
        (1, "failed", "boom 1"), (2, "failed", "boom 2"), (3, "succeeded", None)]
    unknown = _cli(settings, vhost, "jobs", "show", "nobody-sent-this")
    assert unknown.returncode == 1 and "unknown" in unknown.stdout


def _cli(settings, vhost: str, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    env = {"XDG_STATE_HOME": str(settings.state_dir / "cli"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([QUEUEWATCH, *args, "--vhost", vhost], capture_output=True, text=True,
                          timeout=60, env=env)


async def test_unknown_and_malformed_ids(connection, settings, vhost):
    await declare(connection, vhost, QueueSpec("jobs"))
    async with Jobs(settings) as jobs:
        status = await jobs.status("nobody-published-this")
        assert status.state is JobState.UNKNOWN and status.attempts == ()
        with pytest.raises(JobUnknown):
            await jobs.result("nobody-published-this", timeout=1)
        from queuewatch.errors import ConfigError
        for bad in ("", "x" * 300, "a\nb"):
            with pytest.raises(ConfigError):
                await jobs.status(bad)


async def test_dead_lettered_result_raises_its_error_and_oversize_result_fails(connection, settings, vhost):
    topo = await declare(connection, vhost, QueueSpec("jobs", retry=RetryPolicy(max_attempts=1)))
    settings = replace(settings, result_max_bytes=100)
    worker = Worker(settings, topo)

    @worker.job("jobs")
    async def handle(job: Job) -> object:
        if job.payload["kind"] == "boom":
            raise ValueError("no such customer")
        if job.payload["kind"] == "big":
            return "x" * 500
        if job.payload["kind"] == "notjson":
            return {1, 2}
        await asyncio.sleep(job.payload.get("sleep", 0))
        return None

    async with Jobs(settings) as jobs, running(worker), AsyncProducer(settings, topo) as producer:
        for kind in ("boom", "big", "notjson", "none"):
            await producer.publish("jobs", {"kind": kind}, job_id=kind)
        with pytest.raises(JobFailed, match="ValueError: no such customer"):
            await jobs.result("boom", timeout=15)
        with pytest.raises(JobFailed, match="over result_max_bytes"):
            await jobs.result("big", timeout=15)
        with pytest.raises(JobFailed, match="not JSON"):
            await jobs.result("notjson", timeout=15)
        assert await jobs.result("none", timeout=15) is None
        await producer.publish("jobs", {"kind": "slow", "sleep": 3}, job_id="slow")
        with pytest.raises(ResultTimeout):
            await jobs.result("slow", timeout=0.5)
        boom = await jobs.status("boom")
    assert boom.state is JobState.DEAD_LETTERED and boom.reason == "failed"
    assert boom.attempts[0].error == "no such customer"
    assert [e.data.get("dlq") for e in boom.events if e.kind == "dead_lettered"] == ["jobs.dlq"]


async def test_sync_twins_publish_and_read_status(settings, connection, vhost):
    # Given a queue, and the blocking producer and status client (used from threads here)
    await declare(connection, vhost, QueueSpec("jobs"))

    def publish_then_ask() -> tuple[JobState, JobState]:
        with Producer(settings) as producer:
            producer.publish("jobs", {"a": 1}, job_id="sync-1")
        with JobsClient(settings) as client:
            return client.status("sync-1").state, client.status("never-sent").state

    # Then the job published by the sync producer is queued, and an unknown id is unknown
    assert await asyncio.to_thread(publish_then_ask) == (JobState.QUEUED, JobState.UNKNOWN)


async def test_past_retention_is_unknown_and_a_deleted_stream_is_a_clear_error(connection, settings, vhost):
    from queuewatch.jobs import EventsUnavailable

    settings = replace(settings, events_max_age=3)
    topo = await declare(connection, vhost, QueueSpec("jobs"))
    async with AsyncProducer(settings, topo) as producer, Jobs(settings, sync_timeout=3) as jobs:
        await producer.publish("jobs", {}, job_id="old")
        assert (await jobs.status("old")).state is JobState.QUEUED
        # When its events are older than the retention, it answers unknown (not "pending")
        await asyncio.sleep(3.5)
        assert (await jobs.status("old")).state is JobState.UNKNOWN
        # When the stream itself is deleted, the reader does not hang: the stream is
        # declared again (by the next recorder) and read from its new start
        channel = await connection.channel()
        await channel.queue_delete(settings.events_stream)
        assert (await jobs.status("old")).state is JobState.UNKNOWN
        await producer.publish("jobs", {}, job_id="new")
        assert (await jobs.status("new")).state is JobState.QUEUED
    # And when it cannot be read at all, the answer says why instead of hanging
    async with Jobs(settings, sync_timeout=2) as jobs:
        channel = await connection.channel()
        await channel.queue_delete(settings.events_stream)
        jobs.recorder.stream = "nowhere"  # nothing re-creates it in this test
        with pytest.raises(EventsUnavailable, match="did not answer within 2s"):
            await jobs.status("new")


@pytest.mark.parametrize("via", ["messages", "shovel"])
async def test_a_replayed_job_timeline_goes_on_after_its_death(connection, mgmt, settings, vhost,
                                                                via):
    from queuewatch.dlq import DeadLetterQueue

    # Given a job that died (one attempt), then a fixed handler
    topo = await declare(connection, vhost, QueueSpec("jobs", retry=RetryPolicy(max_attempts=1)))
    fixed = asyncio.Event()
    worker = Worker(settings, topo)

    @worker.job("jobs")
    async def handle(job: Job) -> str:
        if not fixed.is_set():
            raise RuntimeError("bug")
        return "ok"

    async with Jobs(settings) as jobs, running(worker), AsyncProducer(settings, topo) as producer:
        await producer.publish("jobs", {}, job_id="phoenix")
        with pytest.raises(JobFailed):
            await jobs.result("phoenix", timeout=15)
        fixed.set()
        # When it is replayed out of its DLQ
        dlq = DeadLetterQueue(connection, mgmt, settings, "jobs.dlq")
        result = await dlq.replay(via_shovel=via == "shovel")
        assert (result.replayed, result.via) == (1, via)
        # Then its status follows it: replayed, run again, succeeded with its result
        assert await jobs.result("phoenix", timeout=15) == "ok"
        status = await jobs.status("phoenix")
    kinds = [e.kind for e in status.events]
    assert kinds == ["accepted", "started", "attempt_failed", "dead_lettered", "replayed",
                     "started", "succeeded"], kinds
    replayed = next(e for e in status.events if e.kind == "replayed")
    assert replayed.data["dlq"] == "jobs.dlq"
    # (a shovel moves it inside the broker: the worker records it when the job arrives)
    assert replayed.source.role == ("replay" if via == "messages" else "worker")
    assert status.state.value == "succeeded" and status.attempt == 1

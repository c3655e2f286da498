"""A worker records a job's idempotency key and its ``succeeded`` event at the same time. When
its process dies after the key and before the event (a kill -9 in that window), the key keeps
the event: the redelivery, skipped as a duplicate, records it again, so the job's status says
succeeded (with its result) instead of staying "running" for ever."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from queuewatch.events import model as ev
from queuewatch.events.model import Source, line
from queuewatch.idempotency import OutcomeStore, RedisStore, SqliteStore
from queuewatch.jobs import Jobs, JobState
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec
from queuewatch.worker import Job, Worker, WorkerObserver
from tests.helpers import declare, redis_client, wait_until
from tests.workers import running


async def _redis_store() -> RedisStore:
    return RedisStore(prefix=f"qwtest:{uuid.uuid4().hex}:", ttl=120, client=await redis_client())


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_a_completed_job_whose_event_was_lost_is_recorded_by_its_redelivery(
        kind, connection, settings, vhost, tmp_path):
    store: OutcomeStore = (SqliteStore(tmp_path / "idem.sqlite3") if kind == "sqlite"
                           else await _redis_store())
    topo = await declare(connection, vhost, QueueSpec("jobs"), delay_levels=1)
    # Given a job whose first run completed and recorded its key, then died before its
    # succeeded event reached the stream (its outcome is only in the store)
    outcome = line(ev.SUCCEEDED, "ghost-1", "jobs", 1, Source("worker", name="w-dead"),
                   {"duration": 0.25, "result": {"total": 7}})
    await store.mark_completed("ghost-1", outcome)
    runs: list[str] = []
    skipped = Skipped()
    worker = Worker(settings, topo, worker_id="w-next", idempotency=store, metrics=False,
                    observers=[skipped])

    @worker.job("jobs")
    async def handler(job: Job) -> None:
        runs.append(job.job_id)

    async with Jobs(settings) as jobs, AsyncProducer(settings, topo) as producer:
        await producer.publish("jobs", {"n": 1}, job_id="ghost-1")
        await producer.publish("jobs", {"n": 2}, job_id="fresh-1")
        async with running(worker):
            # When its redelivery comes to another worker
            assert await jobs.result("fresh-1", timeout=20) is None
            # Then it is not run again, and its status is the first run's outcome
            assert await jobs.result("ghost-1", timeout=20) == {"total": 7}
            status = await jobs.status("ghost-1")
            assert runs == ["fresh-1"]
            assert status.state is JobState.SUCCEEDED
            assert sorted((e.kind, e.source.name) for e in status.events) == [
                ("accepted", "queuewatch-producer"), ("succeeded", "w-dead")], status.events
            # And once the event is confirmed the store keeps the key, not the outcome
            for _ in range(50):
                if await store.completed_outcome("ghost-1") == (True, None):
                    break
                await asyncio.sleep(0.1)
            assert await store.completed_outcome("ghost-1") == (True, None)
            # (the job that ran here kept no outcome either: its event was confirmed)
            for _ in range(50):
                if await store.completed_outcome("fresh-1") == (True, None):
                    break
                await asyncio.sleep(0.1)
            assert await store.completed_outcome("fresh-1") == (True, None)
            # And a second redelivery, with nothing left to record, is absorbed too
            await producer.publish("jobs", {"n": 1}, job_id="ghost-1")
            await wait_until(lambda: skipped.jobs == ["ghost-1", "ghost-1"], timeout=20,
                             what="second duplicate absorbed")
        # (the worker closed the store it was given)
        again = await jobs.status("ghost-1", fresh=True)
    assert runs == ["fresh-1"]
    assert [e.kind for e in again.events].count("succeeded") == 1, again.events


class Skipped(WorkerObserver):
    def __init__(self) -> None:
        self.jobs: list[str] = []

    def on_duplicate(self, queue: str, job_id: str) -> None:
        self.jobs.append(job_id)

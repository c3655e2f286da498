"""The job events stream deleted and declared again (its offsets start over at 0) under
readers that go on: the live event stream (SSE), the webhook dispatcher and a reader started
again with the index it had. Each must carry on with the new stream's events, not wait until
its offsets pass the old ones."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import httpx

from queuewatch.jobs import Jobs, JobState
from queuewatch.jobs.web import JobsWeb
from queuewatch.jobs.webhook_service import WebhookService
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec, RetryPolicy
from queuewatch.worker import Job, Worker
from tests.helpers import declare, wait_until
from tests.jobs_http import Receiver, SseEvent, sse_events
from tests.workers import running

SECRET = "test-webhook-secret"


async def test_readers_go_on_after_the_events_stream_is_declared_again(connection, settings, vhost,
                                                                      tmp_path):
    # Given a worker, the HTTP server with a client streaming the queue's events, the webhook
    # service, and a second reader that stops for a while (its index stays on disk)
    settings = replace(settings, webhook_secret=SECRET)
    with Receiver() as receiver:
        topo = await declare(connection, vhost, QueueSpec("jobs", webhook=receiver.url),
                             QueueSpec("queuewatch.webhooks", max_priority=None,
                                       retry=RetryPolicy(max_attempts=3, backoff_initial=1,
                                                         backoff_multiplier=1, jitter=0)),
                             delay_levels=4)
        worker = Worker(settings, topo, concurrency=10)

        @worker.job("jobs")
        async def handle(job: Job) -> int:
            return int(job.payload["n"])

        away = tmp_path / "away.sqlite3"
        async with Jobs(settings) as jobs, running(worker), WebhookService(settings, topo), \
                AsyncProducer(settings, topo) as producer:
            app = JobsWeb(jobs)
            port = await app.start("127.0.0.1", 0)
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                             timeout=30) as http:
                    got: list[SseEvent] = []

                    async def read() -> None:
                        async for event in sse_events(http, "/events?queue=jobs"):
                            got.append(event)

                    reader = asyncio.create_task(read())
                    await asyncio.sleep(0.5)  # subscribed
                    # (the old stream gets well ahead of what the new one will hold)
                    await asyncio.gather(*(producer.publish("jobs", {"n": i}, job_id=f"old-{i}")
                                           for i in range(40)))
                    for i in range(40):
                        await jobs.wait(f"old-{i}", 30)
                    async with Jobs(settings, index=away) as other:
                        assert (await other.status("old-39")).state is JobState.SUCCEEDED
                    await wait_until(lambda: len(receiver.accepted()) >= 40, timeout=60,
                                     what="the old jobs' webhooks")
                    # When the events stream is deleted, and jobs go on (it is declared again)
                    channel = await connection.channel()
                    await channel.queue_delete(settings.events_stream)
                    await asyncio.sleep(1)
                    for i in range(3):
                        await producer.publish("jobs", {"n": i}, job_id=f"new-{i}")
                    for i in range(3):
                        assert (await jobs.wait(f"new-{i}", 30)).state is JobState.SUCCEEDED
                    # Then the client streaming all along gets the new jobs' events
                    await wait_until(
                        lambda: sum(json.loads(e.data)["job"].startswith("new-") for e in got) >= 9,
                        timeout=20, what="the new jobs' events on the live stream")
                    # And their webhooks are delivered
                    await wait_until(lambda: len(receiver.accepted()) >= 43, timeout=60,
                                     what="the new jobs' webhooks")
                    # And a client that comes back with its last id gets them too
                    last_old = next(e.id for e in reversed(got)
                                    if e.id and json.loads(e.data)["job"].startswith("old-"))
                    again: list[str] = []
                    async for event in sse_events(http, "/events?queue=jobs",
                                                  last_event_id=last_old):
                        again.append(json.loads(event.data)["job"])
                        if sum(j.startswith("new-") for j in again) >= 9:
                            break
                    reader.cancel()
            finally:
                await app.close()
            # And the reader started again with its old index knows the new jobs
            async with Jobs(settings, index=away, sync_timeout=10) as other:
                assert (await other.status("new-2")).state is JobState.SUCCEEDED
    hooked = sorted(json.loads(d.body)["job_id"] for d in receiver.accepted())
    assert [j for j in hooked if j.startswith("new-")] == ["new-0", "new-1", "new-2"]

"""What the job status API and the live event stream show of a job: never its stored message
(the body and headers a scheduled job keeps for run-now) nor its webhook's path or query
(where tokens live) — the same on ``GET /jobs/{id}``, ``/events`` and ``jobs show --json`` —
and a job's result once (as ``result``, not again in its timeline)."""

from __future__ import annotations

import asyncio
import json

from queuewatch.jobs import Jobs
from queuewatch.jobs.state import fold
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec
from queuewatch.worker import Job, Worker
from tests.helpers import declare
from tests.jobs_http import SseEvent, served, sse_events
from tests.workers import running

TOKEN = "tok-5b1e9c"
CARD = "4111-1111-1111-1111"


async def test_neither_the_stored_message_nor_the_webhook_token_is_shown(connection, settings, vhost):
    # Given a delayed job (its scheduled event keeps its message for run-now) with a webhook
    # whose query holds a token, and a client streaming its events
    topo = await declare(connection, vhost, QueueSpec("jobs"))
    hook = f"https://hooks.example.com/services/T0/B0?token={TOKEN}"
    async with Jobs(settings) as jobs, served(jobs) as (_app, http), \
            AsyncProducer(settings, topo) as producer:
        got: list[SseEvent] = []

        async def read() -> None:
            async for event in sse_events(http, "/events?job=later"):
                got.append(event)
                return

        reader = asyncio.create_task(read())
        await asyncio.sleep(0.5)  # subscribed
        await producer.publish("jobs", {"card": CARD}, job_id="later", delay=60,
                               webhook=hook)
        await asyncio.wait_for(reader, 20)
        status = await http.get("/jobs/later")
        # (a reconnecting client gets the same from the index)
        again: list[SseEvent] = []
        async for event in sse_events(http, "/events?job=later&last_event_id=0-0"):
            again.append(event)
            break
        # (the job system itself still has both: run-now and the dispatcher need them)
        stored = (await jobs.status("later")).data
    assert "message" in stored and stored["webhook"] == hook
    # Then the live event, the resumed one and the status show when it is due and where its
    # webhook goes, and nothing more
    live, resumed = json.loads(got[0].data), json.loads(again[0].data)
    timeline = status.json()["events"][0]
    for event in (live, resumed, timeline):
        assert event["kind"] == "scheduled" and "due" in event["data"], event
        assert "message" not in event["data"], event
        assert event["data"]["webhook"] == "https://hooks.example.com", event
    for text in (got[0].data, again[0].data, status.text):
        assert TOKEN not in text and CARD not in text and "eyJjYXJk" not in text  # (base64 too)


async def test_a_large_result_is_in_the_status_once(connection, settings, vhost):
    # Given a job whose handler returned a large value (48 KiB, under result_max_bytes)
    topo = await declare(connection, vhost, QueueSpec("jobs"))
    worker = Worker(settings, topo, worker_id="w-big")
    mark = "big-result-7f3a"
    value = {"report": mark + "x" * 48 * 1024}

    @worker.job("jobs")
    async def report(job: Job) -> dict[str, str]:
        return value

    async with Jobs(settings) as jobs, served(jobs) as (_app, http), running(worker), \
            AsyncProducer(settings, topo) as producer:
        await producer.publish("jobs", {}, job_id="big")
        assert (await http.get("/jobs/big/result", params={"timeout": 20})).json()["result"] == value
        # When its status is asked
        r = await http.get("/jobs/big")
        stored = await jobs.status("big")
    # Then the value is in it once, as its result (the answer is not twice its size)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "succeeded" and body["has_result"] and body["result"] == value
    assert r.text.count(mark) == 1, r.text.count(mark)
    assert len(r.content) < 1.5 * len(json.dumps(value))
    # And the timeline keeps its shape: the succeeded event with its details, less the value
    succeeded = body["events"][-1]
    assert succeeded["kind"] == "succeeded" and "duration" in succeeded["data"], succeeded
    assert "result" not in succeeded["data"], succeeded
    # (the record itself keeps it: the live stream, webhooks and result() read it from there)
    assert stored.events[-1].data["result"] == value
    # And once the result expired, the status shows it nowhere
    expired = fold("big", stored.events, result_ttl=1, now_ms=stored.events[-1].at_ms + 2000)
    assert expired.result_expired and mark not in json.dumps(expired.to_json())

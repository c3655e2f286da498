"""A job's own webhook when the stream holds its events the other way round.

A job's ``accepted`` (which carries the ``x-qw-webhook`` the producer gave it) is recorded
after the broker's confirm, so a fast worker's ``started`` and ``succeeded`` can reach the
events stream first (seen: 4 of 16 runs of a job worker beside ``queuewatch webhooks``
dispatched nothing, 2 of them seen to have read the job's end before its webhook was known). Here the stream is
written in that order on purpose, with the events a producer and a worker record."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

from queuewatch.events import model as ev
from queuewatch.events.model import Event, Source
from queuewatch.events.recorder import record_once
from queuewatch.jobs import dispatcher as dispatcher_module
from queuewatch.jobs.webhook_service import WebhookService
from queuewatch.jobs.webhooks import verify
from queuewatch.topology import QueueSpec, RetryPolicy
from tests.helpers import declare, wait_until
from tests.jobs_http import Receiver

SECRET = "test-webhook-secret"
PRODUCER = Source("producer", name="svc")
WORKER = Source("worker", name="w1")


def accepted(job: str, at_ms: int, webhook: str | None) -> Event:
    return Event(ev.ACCEPTED, job, "jobs", 0, PRODUCER, at_ms=at_ms,
                 data={"webhook": webhook} if webhook else {})


def ran(job: str, at_ms: int) -> list[Event]:
    return [Event(ev.STARTED, job, "jobs", 1, WORKER, at_ms=at_ms),
            Event(ev.SUCCEEDED, job, "jobs", 1, WORKER, at_ms=at_ms + 1,
                  data={"result": {"job": job}})]


async def test_an_end_read_before_its_accepted_still_gets_its_own_webhook(
        connection, settings, vhost, monkeypatch):
    monkeypatch.setattr(dispatcher_module, "HOLD", 3.0, raising=False)
    settings = replace(settings, webhook_secret=SECRET)
    with Receiver() as receiver:
        # Given job queues with no webhook of their own, and the webhook service running
        topo = await declare(connection, vhost, QueueSpec("jobs", retry=RetryPolicy(max_attempts=1)),
                             delay_levels=4)
        async with WebhookService(settings, topo) as service:
            now = ev.now_ms()
            # When a job's end reaches the stream before its accepted (with its own webhook),
            await record_once(connection, settings, ran("fast", now))
            await asyncio.sleep(0.5)
            await record_once(connection, settings, [accepted("fast", now - 1, receiver.url)])
            # a foreign job (no accepted, ever) ends, and a job whose producer's clock is a
            # minute ahead of its worker's is recorded the same way round
            await record_once(connection, settings, ran("foreign", now + 10))
            await record_once(connection, settings, ran("skewed", now + 20))
            await record_once(connection, settings,
                              [accepted("skewed", now + 60_000, receiver.url)])
            # Then each job with a webhook gets it once, and the foreign one none
            await wait_until(lambda: len(receiver.accepted()) >= 2, timeout=30,
                             what="2 deliveries")
            # And the dispatcher's cursor gets past the foreign job's end (held 3 s at most)
            last = service.jobs.index.position_of(
                service.jobs.index.events_of("skewed")[-1].event_id)
            await wait_until(lambda: _at_least(service, last), timeout=15,
                             what="the cursor past every event")
            await asyncio.sleep(1)
            assert service.dispatcher is not None and service.dispatcher.published == 2
    bodies = {}
    for d in receiver.accepted():
        body = verify(SECRET, d.body, d.headers)
        bodies[body["job_id"]] = body
    assert sorted(bodies) == ["fast", "skewed"], bodies
    assert bodies["fast"]["state"] == "succeeded" and bodies["fast"]["result"] == {"job": "fast"}
    assert len(receiver.deliveries) == 2, [json.loads(d.body) for d in receiver.deliveries]


async def _at_least(service: WebhookService, position: tuple[int, int] | None) -> bool:
    cursor = service.dispatcher.cursor if service.dispatcher else None
    return cursor is not None and position is not None and cursor >= position

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

import pika

from queuewatch.envelope import H_WEBHOOK
from queuewatch.events import model as ev
from queuewatch.events.model import Event, Source
from queuewatch.events.recorder import record_once
from queuewatch.jobs import dispatcher as dispatcher_module
from queuewatch.jobs.webhook_service import WebhookService
from queuewatch.jobs.webhooks import verify
from queuewatch.topology import QueueSpec, RetryPolicy
from queuewatch.worker import Job, Worker
from tests.helpers import declare, wait_until
from tests.jobs_http import Receiver
from tests.workers import running

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


def _publish_with_pika(settings, queue: str, messages: list[tuple[str, dict[str, str]]]) -> None:  # type: ignore[no-untyped-def]
    """Another client's jobs: plain pika, no queuewatch producer (so no ``accepted``)."""
    conn = pika.BlockingConnection(pika.URLParameters(settings.amqp_url_for()))
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        for job_id, headers in messages:
            channel.basic_publish("", queue, json.dumps({"n": 1}).encode(), pika.BasicProperties(
                message_id=job_id, headers=headers, content_type="application/json",
                delivery_mode=2))
    finally:
        conn.close()


async def test_another_clients_job_with_a_webhook_header_gets_its_webhook(connection, settings, vhost):
    settings = replace(settings, webhook_secret=SECRET)
    with Receiver() as receiver:
        # Given a job queue with no webhook of its own, a queuewatch worker on it, and the
        # webhook service running
        topo = await declare(connection, vhost, QueueSpec("jobs", retry=RetryPolicy(max_attempts=1)),
                             delay_levels=4)
        worker = Worker(settings, topo, concurrency=4)

        @worker.job("jobs")
        async def handle(job: Job) -> int:
            return 7

        async with WebhookService(settings, topo) as service, running(worker):
            # When plain pika publishes a job whose x-qw-webhook header names the receiver,
            # and one whose header is not a URL
            _publish_with_pika(settings, "jobs", [("pika-1", {H_WEBHOOK: receiver.url}),
                                                  ("pika-bad", {H_WEBHOOK: "not a url"})])
            # Then the first gets its webhook, once, with its outcome
            await wait_until(lambda: len(receiver.accepted()) >= 1, timeout=30,
                             what="the delivery")
            await wait_until(lambda: service.jobs.index.status("pika-bad").state.finished,
                             timeout=30, what="the second job finished")
            await asyncio.sleep(6)  # past the dispatcher's hold of an end without accepted
            assert service.dispatcher is not None and service.dispatcher.published == 1
    body = verify(SECRET, receiver.accepted()[0].body, receiver.accepted()[0].headers)
    assert body["job_id"] == "pika-1" and body["state"] == "succeeded" and body["result"] == 7
    assert len(receiver.deliveries) == 1

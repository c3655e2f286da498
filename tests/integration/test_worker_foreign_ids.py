"""Job ids of messages published without a ``message_id`` (plain pika services).

Delivery tags restart at 1 on every channel, so an id made of one (``delivery-<tag>``) was
shared by different messages after a reconnect, and changed from one attempt of a job to the
next. A message without a ``message_id`` gets its job id as the DLQ does (Celery's ``id``
header, the id in a Dramatiq or Celery body; else a random one), and every copy the worker
publishes of it (retry, dead letter) carries that id as its ``message_id``.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from urllib.parse import urlsplit

import pika
import pytest

from queuewatch import envelope
from queuewatch.dlq.model import job_id_of
from queuewatch.jobs import Jobs, JobState
from queuewatch.jobs.control import cancel_pending
from queuewatch.topology import QueueSpec, RetryPolicy
from queuewatch.worker import Job, Worker
from tests.helpers import declare, wait_until
from tests.proxy import TcpProxy
from tests.workers import dead_letters, running


def _pika_publish(settings, queue: str, *bodies: bytes, headers=None) -> None:  # type: ignore[no-untyped-def]
    """Publish ``bodies`` as a plain pika service does: no message_id, no queuewatch headers."""
    url = urlsplit(settings.amqp_url)
    user, password = settings.credentials
    params = pika.ConnectionParameters(url.hostname or "127.0.0.1", url.port or 5672,
                                       settings.effective_vhost,
                                       pika.PlainCredentials(user, password))
    conn = pika.BlockingConnection(params)
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        for body in bodies:
            channel.basic_publish("", queue, body, pika.BasicProperties(
                delivery_mode=2, headers=headers))
    finally:
        conn.close()


async def publish(settings, queue: str, *bodies: bytes, headers=None) -> None:  # type: ignore[no-untyped-def]
    await asyncio.to_thread(_pika_publish, settings, queue, *bodies, headers=headers)


async def test_id_less_messages_keep_apart_across_a_reconnect_and_a_cancel_hits_only_its_job(
        connection, settings, vhost):
    # Given a queue whose failing jobs are retried once, 6 s later, and a worker through a proxy
    spec = QueueSpec("jobs", retry=RetryPolicy(max_attempts=2, backoff_initial=6, jitter=0))
    topo = await declare(connection, vhost, spec, delay_levels=3)
    ran: list[tuple[bytes, str, int]] = []
    broker = urlsplit(settings.amqp_url)
    with TcpProxy(("127.0.0.1", broker.port or 5672)) as proxy:
        user, password = settings.credentials
        via = f"amqp://{user}:{password}@127.0.0.1:{proxy.port}/"
        worker = Worker(replace(settings, amqp_url=via, amqp_urls=(), heartbeat=2), topo,
                        idempotency=False, metrics=False)

        @worker.job("jobs")
        async def handle(job: Job) -> None:
            ran.append((job.body, job.job_id, job.attempt))
            if job.body == b"A":
                raise RuntimeError("A fails")

        async with running(worker), Jobs(settings) as jobs:
            # When a plain pika service publishes A (it fails: a retry is scheduled)
            await publish(settings, "jobs", b"A")
            await wait_until(lambda: len(ran) == 1, what="A's first run")
            a_id = ran[0][1]

            async def retrying() -> bool:
                return (await jobs.status(a_id)).state is JobState.RETRYING
            await wait_until(retrying, what="A's retry on record")
            # and the worker's link is cut and comes back (delivery tags start again at 1)
            proxy.cut()
            await wait_until(lambda: not worker.connected.is_set(), what="the cut noticed")
            proxy.restore()
            await wait_until(lambda: worker.connected.is_set(), timeout=15,
                             what="the worker consuming again")
            # and an operator cancels A while it waits for its retry; then B is published
            await cancel_pending(jobs, a_id)
            await publish(settings, "jobs", b"B")
            await wait_until(lambda: any(body == b"B" for body, _, _ in ran), timeout=5,
                             what="B to run (a cancel of A skipped it: same job id)")
            # Then A's retry comes back after its 6 s and is skipped as cancelled
            async def a_skipped() -> bool:
                return any(e.kind == "skipped" for e in (await jobs.status(a_id)).events)
            await wait_until(a_skipped, timeout=15, what="A's retry skipped")
            b_id = next(job_id for body, job_id, _ in ran if body == b"B")
            a_status = await jobs.status(a_id)
            b_status = await jobs.status(b_id)
    # B, a different message, has a job id of its own; A ran once (its retry was cancelled)
    assert b_id != a_id
    assert [body for body, _, _ in ran] == [b"A", b"B"]
    assert a_status.state is JobState.CANCELLED
    assert b_status.state is JobState.SUCCEEDED


@pytest.mark.parametrize("celery", [False, True], ids=["plain", "celery-header"])
async def test_a_failing_id_less_job_keeps_one_id_over_its_retries_into_the_dlq(
        connection, settings, vhost, celery):
    # Given a job retried twice, 1 s apart, published by a plain pika service (or a Celery
    # one: its id in the `id` header, no message_id)
    spec = QueueSpec("jobs", retry=RetryPolicy(max_attempts=3, backoff_initial=1,
                                               backoff_multiplier=1, jitter=0))
    topo = await declare(connection, vhost, spec, delay_levels=2)
    ran: list[tuple[str, int]] = []
    worker = Worker(settings, topo, idempotency=False, metrics=False)

    @worker.job("jobs")
    async def handle(job: Job) -> None:
        ran.append((job.job_id, job.attempt))
        raise RuntimeError("always fails")

    headers = {"id": "c3f1-task-7", "task": "tasks.charge"} if celery else None
    async with running(worker), Jobs(settings) as jobs:
        # When it fails every time
        await publish(settings, "jobs", b'{"n": 1}', headers=headers)
        [dead] = await dead_letters(connection, "jobs", 1, timeout=20)
        job_id = ran[0][0]
        status = await jobs.status(job_id)
    # Then its three attempts, its record and its dead letter all have one job id
    assert ran == [(job_id, 1), (job_id, 2), (job_id, 3)]
    if celery:
        assert job_id == "c3f1-task-7"  # the id the DLQ and Celery know it by
    assert dead.message_id == job_id
    assert job_id_of(dead.message_id, dead.headers, dead.body) == job_id
    assert dead.headers[envelope.H_ATTEMPT] == 3
    assert status.state is JobState.DEAD_LETTERED and status.attempt == 3
    assert [e.kind for e in status.events].count("started") == 3

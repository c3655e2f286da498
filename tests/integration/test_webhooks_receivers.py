"""Completion webhooks against receivers that are not simply up or down: one that wants basic
auth from the URL's ``user:password@``, and one that answers a byte at a time."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from queuewatch.envelope import H_ERROR_MESSAGE
from queuewatch.jobs import Jobs, JobState
from queuewatch.jobs.webhook_service import WebhookService
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec, RetryPolicy
from queuewatch.worker import Job, Worker
from tests.helpers import declare, drain, wait_until
from tests.jobs_http import Receiver
from tests.workers import running

SECRET = "test-webhook-secret"
PASSWORD = "pw-s3cr3t-9f2"


def one_attempt_webhooks() -> QueueSpec:
    return QueueSpec("queuewatch.webhooks", max_priority=None,
                     retry=RetryPolicy(max_attempts=1))


def ok_worker(settings, topo) -> Worker:  # type: ignore[no-untyped-def]
    worker = Worker(settings, topo, concurrency=5)

    async def handle(job: Job) -> dict[str, str]:
        return {"done": job.job_id}

    worker.add_handler("jobs", handle)
    return worker


@contextmanager
def dripping_receiver(byte_every: float) -> Iterator[str]:
    """A receiver that reads the POST, then answers 200 one byte every ``byte_every`` s."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def answer(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            for ch in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
                if stop.wait(byte_every):
                    return
                try:
                    conn.sendall(bytes([ch]))
                except OSError:
                    return

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    finally:
        stop.set()
        server.close()


async def test_a_webhook_url_with_credentials_is_sent_as_basic_auth_and_never_shown(
        connection, settings, vhost):
    settings = replace(settings, webhook_secret=SECRET)
    with Receiver() as receiver:
        # Given a receiver behind basic auth, named with its credentials in the URL (as curl
        # and requests take them), and one whose host has no port and nothing listening
        port = receiver.url.split(":")[2].split("/")[0]
        with_auth = f"http://hooks:{PASSWORD}@127.0.0.1:{port}/hook?t=1"
        nowhere = f"http://hooks:{PASSWORD}@127.0.0.1/hook"  # (port 80: nobody there)
        topo = await declare(connection, vhost, QueueSpec("jobs"), one_attempt_webhooks(),
                             delay_levels=4)
        async with WebhookService(settings, topo), running(ok_worker(settings, topo)), \
                AsyncProducer(settings, topo) as producer, Jobs(settings) as jobs:
            # When a job with each finishes
            await producer.publish("jobs", {}, job_id="auth-1", webhook=with_auth)
            await producer.publish("jobs", {}, job_id="auth-2", webhook=nowhere)
            await jobs.wait("auth-1", 30)
            await jobs.wait("auth-2", 30)
            # Then the first receiver gets the delivery once, with the credentials as basic
            # auth (before: urllib took "hooks:pw@127.0.0.1" for a host name: never delivered)
            await wait_until(lambda: len(receiver.accepted()) >= 1, timeout=30,
                             what="the delivery to the receiver behind basic auth")
            dead = await drain(connection, "queuewatch.webhooks.dlq", 1, timeout=30)
            await asyncio.sleep(1)
            delivered = receiver.accepted()
            assert len(delivered) == 1
            assert delivered[0].headers["Authorization"] == "Basic aG9va3M6cHctczNjcjN0LTlmMg=="
            assert json.loads(delivered[0].body)["job_id"] == "auth-1"
            # And the second one's failure names the receiver, not the password: in the dead
            # letter, the webhook job's status and its timeline (before: "nonnumeric port:
            # 'pw-s3cr3t-9f2@127.0.0.1'", an http.client error that urllib let through)
            reason = str(dead[0].headers[H_ERROR_MESSAGE])
            assert "http://127.0.0.1 unreachable" in reason, reason
            status = await jobs.status(str(dead[0].message_id))
            assert status.state is JobState.DEAD_LETTERED
            shown = json.dumps(status.to_json()) + reason
            assert PASSWORD not in shown


async def test_a_receiver_that_answers_a_byte_at_a_time_fails_at_the_timeout(
        connection, settings, vhost):
    settings = replace(settings, webhook_secret=SECRET)
    with dripping_receiver(byte_every=0.5) as url:
        # Given a receiver that answers 200 one byte every half second (39 bytes: ~20 s) and
        # deliveries bounded to 2 s
        topo = await declare(connection, vhost, QueueSpec("jobs", webhook=url),
                             one_attempt_webhooks(), delay_levels=4)
        async with WebhookService(settings, topo, timeout=2), running(ok_worker(settings, topo)), \
                AsyncProducer(settings, topo) as producer, Jobs(settings) as jobs:
            # When a job finishes
            await producer.publish("jobs", {}, job_id="drip-1")
            await jobs.wait("drip-1", 30)
            t0 = time.monotonic()
            # Then its delivery fails at the timeout, not when the receiver is done (before:
            # the socket timeout bounded each read, so every byte reset the clock: ~20 s)
            dead = await drain(connection, "queuewatch.webhooks.dlq", 1, timeout=30)
            took = time.monotonic() - t0
    assert len(dead) == 1
    assert "did not answer within 2s" in str(dead[0].headers[H_ERROR_MESSAGE])
    assert took < 8, took

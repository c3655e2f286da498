"""Completion webhooks on the real broker: delivered as queuewatch jobs (retries, DLQ),
signed, exactly one accepted delivery per job, and never in the way of job processing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from queuewatch.envelope import H_ERROR_MESSAGE, H_WEBHOOK
from queuewatch.jobs import Jobs, JobState
from queuewatch.jobs.dispatcher import Dispatcher
from queuewatch.jobs.webhook_service import WebhookService
from queuewatch.jobs.webhooks import DELIVERY_HEADER, verify
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec, RetryPolicy
from queuewatch.worker import Job, Worker
from tests.helpers import declare, depth, drain, wait_until
from tests.jobs_http import Receiver
from tests.nodes import free_port
from tests.workers import QUEUEWATCH, running

SECRET = "test-webhook-secret"
ONE_ATTEMPT = RetryPolicy(max_attempts=1)


async def _empty(connection, queue: str) -> bool:  # type: ignore[no-untyped-def]
    return await depth(connection, queue) == 0


def webhooks_spec(attempts: int) -> QueueSpec:
    return QueueSpec("queuewatch.webhooks", max_priority=None, retry=RetryPolicy(
        max_attempts=attempts, backoff_initial=1, backoff_multiplier=1, jitter=0))


def job_worker(settings, topo, *queues: str) -> Worker:  # type: ignore[no-untyped-def]
    worker = Worker(settings, topo, concurrency=20)

    async def handle(job: Job) -> dict[str, int]:
        if job.payload.get("fail"):
            raise ValueError("no such customer")
        return {"n": job.payload["n"]}

    for q in queues:
        worker.add_handler(q, handle)
    return worker


async def test_receiver_down_twice_gets_exactly_one_signed_delivery_per_job(connection, settings, vhost):
    # Given a receiver that answers 503 to the first two tries of every delivery, a queue
    # whose jobs all have it as webhook, and a queue where only some jobs ask for one
    settings = replace(settings, webhook_secret=SECRET)
    with Receiver(fail_first=2) as receiver:
        topo = await declare(
            connection, vhost, QueueSpec("jobs", webhook=receiver.url, retry=ONE_ATTEMPT),
            QueueSpec("plain"), webhooks_spec(5), delay_levels=4)
        async with WebhookService(settings, topo), running(job_worker(settings, topo, "jobs", "plain")), \
                AsyncProducer(settings, topo) as producer, Jobs(settings) as jobs:
            # When 10 jobs finish on "jobs" (one of them dead-lettered) and 3 on "plain"
            for i in range(10):
                await producer.publish("jobs", {"n": i, "fail": i == 3}, job_id=f"j{i}")
            await producer.publish("plain", {"n": 10}, job_id="own-1",
                                   headers={H_WEBHOOK: receiver.url + "?own=1"})
            await producer.publish("plain", {"n": 11}, job_id="own-2",
                                   headers={H_WEBHOOK: receiver.url + "?own=2"})
            await producer.publish("plain", {"n": 12}, job_id="no-hook")
            # Then each of the 12 webhooks is accepted once, after two refused tries
            await wait_until(lambda: len(receiver.accepted()) >= 12, timeout=60,
                             what="12 accepted deliveries")
            await asyncio.sleep(3)  # time for any duplicate to show up
            webhook_job = await jobs.status(receiver.accepted()[0].headers[DELIVERY_HEADER])
    accepted = receiver.accepted()
    tries = Counter(d.headers[DELIVERY_HEADER] for d in receiver.deliveries)
    assert len(accepted) == 12 and len({d.headers[DELIVERY_HEADER] for d in accepted}) == 12
    assert set(tries.values()) == {3}, tries
    # And every accepted delivery carries a valid signature and the job's outcome
    seen: set[str] = set()
    bodies = {}
    for d in accepted:
        body = verify(SECRET, d.body, d.headers, seen=seen)
        bodies[body["job_id"]] = body
        assert d.headers[DELIVERY_HEADER].startswith(f"webhook-{body['job_id']}-")
    assert sorted(bodies) == sorted([f"j{i}" for i in range(10)] + ["own-1", "own-2"])
    assert bodies["j0"]["state"] == "succeeded" and bodies["j0"]["result"] == {"n": 0}
    assert bodies["j3"]["state"] == "dead_lettered"
    assert bodies["j3"]["error"]["message"] == "no such customer"
    assert bodies["own-2"]["queue"] == "plain" and bodies["own-2"]["result"] == {"n": 11}
    # And the delivery is a job like any other: three attempts on the record
    assert webhook_job.state is JobState.SUCCEEDED and webhook_job.attempt == 3
    assert [a.outcome for a in webhook_job.attempts] == ["failed", "failed", "succeeded"]
    assert "HTTP 503" in (webhook_job.attempts[0].error or "")
    assert "/hook" not in (webhook_job.attempts[0].error or "")  # the receiver, not its path


@contextlib.contextmanager
def webhooks_process(settings, tmp_path: Path, topology_toml: str) -> Iterator[subprocess.Popen[str]]:  # type: ignore[no-untyped-def]
    """``queuewatch webhooks`` in its own process (as in production), stopped by SIGTERM."""
    topo_file = tmp_path / "topology.toml"
    topo_file.write_text(topology_toml)
    env = {**os.environ, "QUEUEWATCH_AMQP_URL": settings.amqp_url,
           "QUEUEWATCH_WEBHOOK_SECRET": SECRET, "XDG_STATE_HOME": str(tmp_path / "hooks-state")}
    proc = subprocess.Popen(
        [QUEUEWATCH, "webhooks", "--vhost", settings.effective_vhost, "--topology",
         str(topo_file), "--concurrency", "2", "--timeout", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "queuewatch webhooks: delivering" in line, (line, proc.stderr.read() if proc.poll() else "")
        assert SECRET not in line
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise


async def test_unreachable_receiver_ends_in_the_dlq_with_the_reason_and_jobs_keep_flowing(
        connection, settings, vhost, tmp_path):
    # Given a webhook to a port nobody listens on, and a receiver that hangs then refuses
    gone = f"http://127.0.0.1:{free_port()}/hook"
    with Receiver(down=True, hang=0.5) as slow:
        topo = await declare(
            connection, vhost, QueueSpec("base"), QueueSpec("gone", webhook=gone),
            QueueSpec("hooked", webhook=slow.url), webhooks_spec(2), delay_levels=4)
        toml = (f'delay_levels = 4\n[[queue]]\nname = "base"\n[[queue]]\nname = "gone"\n'
                f'webhook = "{gone}"\n[[queue]]\nname = "hooked"\nwebhook = "{slow.url}"\n'
                '[[queue]]\nname = "queuewatch.webhooks"\nmax_priority = 0\n'
                '[queue.retry]\nmax_attempts = 2\nbackoff_initial = 1\nbackoff_multiplier = 1\n'
                'jitter = 0\n')
        async with running(job_worker(settings, topo, "base", "gone", "hooked")), \
                AsyncProducer(settings, topo) as producer, Jobs(settings) as jobs:

            async def run_jobs(queue: str, n: int) -> float:
                ids = [f"{queue}-{i}" for i in range(n)]
                t0 = time.monotonic()
                await asyncio.gather(*(producer.publish(queue, {"n": i}, job_id=j)
                                       for i, j in enumerate(ids)))
                done = await asyncio.gather(*(jobs.wait(j, 60) for j in ids))
                assert {s.state for s in done} == {JobState.SUCCEEDED}
                return time.monotonic() - t0

            # Baseline: jobs without webhooks and no webhook service
            baseline = await run_jobs("base", 300)
            with webhooks_process(settings, tmp_path, toml) as proc:
                # When a job finishes whose webhook points nowhere
                await producer.publish("gone", {"n": 0}, job_id="g0")
                await jobs.wait("g0", 30)
                # And jobs finish whose receiver is slow and failing (deliveries pile up)
                hooked = await run_jobs("hooked", 300)
                # Then the unreachable one is retried, then dead-lettered with the reason
                dead = await drain(connection, "queuewatch.webhooks.dlq", 1, timeout=150)  # behind the slow pile
                await wait_until(lambda: len(slow.refused()) >= 2, timeout=30,
                                 what="the slow receiver being tried")
            assert proc.returncode == 0
            assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    assert len(dead) == 1 and str(dead[0].message_id).startswith("webhook-g0-")
    assert "unreachable" in str(dead[0].headers[H_ERROR_MESSAGE])
    assert json.loads(dead[0].body)["url"] == gone
    # And jobs kept completing at their own pace while the receiver was down
    print(f"300 jobs: {baseline:.2f} s without webhooks, {hooked:.2f} s with a failing receiver")
    assert hooked < max(2 * baseline, baseline + 5), (hooked, baseline)
    assert not slow.accepted()


async def test_a_dispatcher_crash_before_its_cursor_moved_delivers_nothing_twice(connection, settings, vhost):
    # Given 20 finished jobs with a webhook
    settings = replace(settings, webhook_secret=SECRET)
    with Receiver() as receiver:
        topo = await declare(connection, vhost, QueueSpec("jobs", webhook=receiver.url),
                             webhooks_spec(3), delay_levels=4)
        service = WebhookService(settings, topo, start="first")
        await service.declare()
        ids = [f"j{i}" for i in range(20)]
        async with running(job_worker(settings, topo, "jobs")), Jobs(settings) as jobs, \
                AsyncProducer(settings, topo) as producer:
            for i, j in enumerate(ids):
                await producer.publish("jobs", {"n": i}, job_id=j)
            await asyncio.gather(*(jobs.wait(j, 30) for j in ids))
            # When the dispatcher publishes their webhook jobs, then "crashes" before its
            # cursor moved (the cursor is put back), and the next start publishes them again
            dispatcher = Dispatcher(jobs, producer, service.topology, start="first")
            while await dispatcher.step():
                pass
            assert dispatcher.published == 20 and dispatcher.cursor is not None
            dispatcher._save(None)
            while await dispatcher.step():
                pass
            assert dispatcher.published == 40
            assert await depth(connection, "queuewatch.webhooks") == 40
            # Then the delivery worker POSTs each job's outcome once
            async with running(service.worker):
                await wait_until(lambda: len(receiver.accepted()) >= 20, timeout=30,
                                 what="20 deliveries")
                await wait_until(lambda: _empty(connection, "queuewatch.webhooks"), timeout=30,
                                 what="the webhooks queue drained")
                await asyncio.sleep(1)
        await service.jobs.close()
        await service.producer.close()
    delivered = Counter(json.loads(d.body)["job_id"] for d in receiver.accepted())
    assert delivered == Counter(ids), delivered

"""Unique jobs at enqueue (``unique_for=``): refused across producers and processes while
the first is queued, scheduled or running; free again once it finished."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap

import pytest

from queuewatch.errors import DuplicateJob
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec
from queuewatch.worker import Job, Worker
from tests.helpers import declare, wait_until
from tests.workers import running

RACER = textwrap.dedent('''
    import json, sys
    from queuewatch.config import load_settings
    from queuewatch.errors import DuplicateJob
    from queuewatch.producer import Producer
    settings = load_settings(env={}, amqp_url=sys.argv[1], vhost=sys.argv[2], job_events=False)
    won = []
    with Producer(settings) as producer:
        for k in range(40):
            try:
                producer.publish("jobs", {"k": k}, job_id=f"{sys.argv[3]}-{k}",
                                 unique_for=120, unique_key=f"key-{k}")
                won.append(k)
            except DuplicateJob:
                pass
    print(json.dumps(won))
''')


async def test_second_publish_of_a_key_is_refused_or_answered_with_the_first(connection, settings, vhost):
    topo = await declare(connection, vhost, QueueSpec("jobs"))
    async with AsyncProducer(settings, topo) as a, AsyncProducer(settings, topo) as b:
        first = await a.publish("jobs", {"n": 1}, job_id="inv-7-a", unique_for=60, unique_key="invoice-7")
        assert not first.existing
        with pytest.raises(DuplicateJob, match="inv-7-a") as caught:
            await b.publish("jobs", {"n": 2}, job_id="inv-7-b", unique_for=60, unique_key="invoice-7")
        assert caught.value.existing_job_id == "inv-7-a"
        again = await b.publish("jobs", {"n": 3}, unique_for=60, unique_key="invoice-7",
                                if_exists="return")
        assert again.existing and again.job_id == "inv-7-a"
        # Another key, or the same key on another queue, is not affected
        await b.publish("jobs", {"n": 4}, job_id="inv-8", unique_for=60, unique_key="invoice-8")
        with pytest.raises(ValueError, match="unique_for must be"):
            await b.publish("jobs", {}, job_id="x", unique_for=0)
        with pytest.raises(ValueError, match="needs a key"):
            await b.publish("jobs", {}, unique_for=5)
    from tests.helpers import depth
    assert await depth(connection, "jobs") == 2  # inv-7-a and inv-8 only


async def test_key_is_free_again_once_the_job_finished(connection, settings, vhost):
    topo = await declare(connection, vhost, QueueSpec("jobs"))
    done: list[str] = []
    worker = Worker(settings, topo)

    @worker.job("jobs")
    async def handle(job: Job) -> None:
        done.append(job.job_id)

    async with AsyncProducer(settings, topo) as producer:
        await producer.publish("jobs", {}, job_id="r1", unique_for=60, unique_key="report")
        with pytest.raises(DuplicateJob):
            await producer.publish("jobs", {}, job_id="r2", unique_for=60, unique_key="report")
        async with running(worker):
            await wait_until(lambda: done == ["r1"], timeout=10, what="r1 done")
            # Then (the worker released the key) the same key is accepted again
            await wait_until_published(producer, "r3")
            await wait_until(lambda: done == ["r1", "r3"], timeout=10, what="r3 done")


async def wait_until_published(producer: AsyncProducer, job_id: str) -> None:
    # The release follows the ack, which follows the job's succeeded event: at most
    # events_hold (10 s) when the worker's stream connection is re-opening (in a new vhost
    # RabbitMQ may close it while the events stream starts: the fresh-clone run saw it).
    # Well short of unique_for (60 s), so a key freed by its token's TTL would still fail.
    deadline = asyncio.get_running_loop().time() + 15
    while asyncio.get_running_loop().time() < deadline:
        try:
            await producer.publish("jobs", {}, job_id=job_id, unique_for=60, unique_key="report")
            return
        except DuplicateJob:
            await asyncio.sleep(0.1)
    raise AssertionError("the key was never released")


async def test_two_producer_processes_racing_each_key_win_once(connection, settings, vhost):
    # Given two processes publishing the same 40 unique keys at the same moment
    await declare(connection, vhost, QueueSpec("jobs"))
    procs = [subprocess.Popen([sys.executable, "-c", RACER, settings.amqp_url_for(), vhost, name],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("p1", "p2")]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    won = [set(json.loads(o[0])) for o in outs]
    # Then every key was published exactly once, by one of them
    assert won[0] | won[1] == set(range(40)) and not (won[0] & won[1]), won
    from tests.helpers import depth
    assert await depth(connection, "jobs") == 40

"""A stop while the link is silent (QA of issue 11), on the real broker through a loopback
proxy that black-holes the worker's connections: the worker ends within its grace plus the
bounded close of its connections, and every job it held goes back to the queue.

Before the fix the bounded waits of the shutdown were added up one after another: the
consumer's ``basic.cancel`` (2 s) before the grace started, then the job events' flush (5 s),
then for each subscription of each link a ``basic.cancel`` (2 s) before the connection's
close (2 s), channel closes (2 s each): a worker with a 3 s grace took 14 s to stop here
(with a 30 s grace under a 30 s ``terminationGracePeriodSeconds`` it is SIGKILLed). Now 6 s.
"""

from __future__ import annotations

import asyncio
import gc
import time

import aio_pika
import pytest

from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec
from queuewatch.worker import Job, Worker
from tests.fault_helpers import proxied
from tests.helpers import declare, depth, wait_until

pytestmark = pytest.mark.timeout(120)

GRACE = 3.0
#: What the close may add to the grace on a silent link: the job events' last flush (1 s
#: once the grace is used up), then the connections' closes (2 s bounds, side by side).
CLOSE_SLACK = 5.0
PREFETCHED = 12


async def test_stop_on_a_silent_link_ends_within_the_grace(settings, connection, vhost, capsys):
    topo = await declare(connection, vhost, QueueSpec("jobs"), delay_levels=1)
    with proxied(settings) as px:
        # Given a worker (through the proxy) running a long job, with more jobs prefetched
        worker = Worker(px.settings, topo, worker_id="silent-1", concurrency=1, metrics=False,
                        shutdown_timeout=GRACE)
        started: list[str] = []

        @worker.job("jobs")
        async def handle(job: Job) -> None:
            started.append(job.job_id)
            await asyncio.sleep(60)

        run = asyncio.create_task(worker.run())
        await wait_until(lambda: worker.connected.is_set() or run.done(), timeout=15,
                         what="the worker consuming")
        async with AsyncProducer(settings, topo) as producer:
            for i in range(PREFETCHED):
                await producer.publish("jobs", {"n": i}, job_id=f"j{i}")
        await wait_until(lambda: started == ["j0"], timeout=10, what="the first job running")
        # When its link goes silent (nothing passes, nothing closes) and it is stopped
        px.amqp.blackhole()
        await asyncio.sleep(1.0)
        t = time.monotonic()
        worker.stop()
        await asyncio.wait_for(run, 60)
        took = round(time.monotonic() - t, 2)
        px.amqp.restore()
        via = f"127.0.0.1:{px.amqp.port}/"
    with capsys.disabled():
        print(f"\nstop on a silent link took {took}s (grace {GRACE:g}s)")
    # Then it ended within its grace plus the bounded close of its connections
    assert took <= GRACE + CLOSE_SLACK, took
    # And none of its connections is left reading as open (aio-pika's flag after a close
    # that got no answer: it would be closed again when collected)
    left_open = [c for c in gc.get_objects()
                 if isinstance(c, aio_pika.Connection) and not c.is_closed and via in str(c)]
    assert not left_open, left_open

    # And every job it held is back in the queue (its connection is gone)
    async def all_back() -> bool:
        return await depth(connection, "jobs") == PREFETCHED
    await wait_until(all_back, timeout=30, what="every held job back in the queue")

"""Queue-wide rate limits on the real broker: the total over 1, 2 and 4 worker processes stays
within 10% of the limit; per-key limits hold per key; a run-time change applies; a job
without its key field runs (logged), nothing lost."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from queuewatch.events.queuestate import LimitSpec
from queuewatch.monitor.session import open_monitor
from queuewatch.operator import limit_queue
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec
from queuewatch.worker import Job, Worker
from tests.helpers import declare, wait_until
from tests.workers import WorkerProcess, running, start_worker_process

LIMIT = 20.0
#: Starts left out at the beginning of a measurement (the burst waiting in the token queue).
WARM_UP = 10
#: Starts measured (8 s at 20/s).
MEASURED = 160


def steady_rate(starts: list[float], skip: int, n: int) -> float:
    """Jobs/s over ``n`` consecutive starts after the first ``skip``."""
    window = sorted(starts)[skip:skip + n]
    assert len(window) == n, f"only {len(window)} starts to measure"
    return (n - 1) / (window[-1] - window[0])


def all_starts(procs: list[WorkerProcess]) -> list[float]:
    return [t for p in procs for times in p.runs().values() for t in times]


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2, 4])
async def test_the_total_rate_over_worker_processes_is_the_limit(connection, settings, vhost,
                                                                 tmp_path, processes):
    # Given a queue limited to 20 jobs/s with a backlog, and N worker processes (4 slots each)
    spec = QueueSpec("limited", rate_limit=LIMIT)
    topo = await declare(connection, vhost, spec, delay_levels=1)
    async with AsyncProducer(settings, topo) as producer:
        for i in range(WARM_UP + MEASURED + 40):
            await producer.submit("limited", {}, job_id=f"j{i}")
        await producer.flush()
    procs = [start_worker_process(tmp_path, amqp_url=settings.amqp_url, vhost=vhost,
                                  worker_id=f"lim-{processes}-{i}",
                                  specs=[{"name": "limited", "rate_limit": LIMIT}], grace=5)
             for i in range(processes)]
    try:
        # When they run for about 9 s
        await wait_until(lambda: len(all_starts(procs)) >= WARM_UP + MEASURED, timeout=40,
                         interval=0.5, what="enough jobs started")
        rate = steady_rate(all_starts(procs), WARM_UP, MEASURED)
        busy = sum(1 for p in procs if p.runs())
        # Then the total is the limit, not N times it
        assert abs(rate - LIMIT) <= 0.1 * LIMIT, (processes, rate)
        assert busy == processes, "every process took part"
        if processes == 2:
            # And a run-time change applies to every process: 40/s
            await limit_queue(connection, settings, "limited", LimitSpec(40.0))
            async with AsyncProducer(settings, topo) as producer:
                for i in range(400):
                    await producer.submit("limited", {}, job_id=f"k{i}")
                await producer.flush()
            await asyncio.sleep(1.0)
            mark = time.time()
            await asyncio.sleep(6.0)
            later = [t for t in all_starts(procs) if t >= mark]
            changed = steady_rate(later, 0, len(later))
            assert abs(changed - 40.0) <= 4.0, (changed, len(later))
            print(f"after 'limit 40': {changed:.2f} jobs/s")
            # And status shows the limit in force
            async with open_monitor(settings, listen=1.0) as session:
                await wait_until(lambda: "limited" in (session.monitor.queue_states or {}),
                                 timeout=5, what="queue state read")
                snap = await session.poll()
            [q] = [q for q in snap.queues if q.name == "limited"]
            assert q.rate_limit == 40.0
    finally:
        for p in procs:
            p.terminate()
    print(f"{processes} process(es): {rate:.2f} jobs/s for a limit of {LIMIT:g}")


@pytest.mark.slow
async def test_per_key_limits_hold_per_key_and_a_missing_key_is_logged(connection, settings,
                                                                        vhost, caplog):
    # Given a per-customer limit of 5/s (no queue-wide limit) and two workers
    spec = QueueSpec("keyed", rate_limit_per_key=5.0, rate_limit_key="payload:customer")
    topo = await declare(connection, vhost, spec, delay_levels=1)
    starts: dict[str, list[float]] = {}

    def make(worker_id: str) -> Worker:
        worker = Worker(settings, topo, worker_id=worker_id, concurrency=8, metrics=False,
                        idempotency=False)

        @worker.job("keyed")
        async def handle(job: Job) -> None:
            starts.setdefault(str(job.payload.get("customer")), []).append(time.monotonic())

        return worker

    caplog.set_level(logging.ERROR, logger="queuewatch.worker.limits")
    async with running(make("key-1")), running(make("key-2")), \
            AsyncProducer(settings, topo) as producer:
        for i in range(60):
            for customer in ("a", "b"):
                await producer.submit("keyed", {"customer": customer}, job_id=f"{customer}{i}")
        await producer.submit("keyed", {"nobody": 1}, job_id="no-key")
        await producer.flush()
        await wait_until(lambda: len(starts.get("a", [])) >= 50 and len(starts.get("b", [])) >= 50,
                         timeout=30, what="keyed jobs")
        await wait_until(lambda: "None" in starts, timeout=10, what="the job without a key")
    # Then each customer got its own 5/s (within 10%), both at once (10/s in total)
    for customer in ("a", "b"):
        rate = steady_rate(starts[customer], 3, 45)
        assert abs(rate - 5.0) <= 0.5, (customer, rate)
        print(f"key {customer}: {rate:.2f} jobs/s for a per-key limit of 5")
    # And the job without the key ran, with one clear error line
    lines = [r.getMessage() for r in caplog.records if "no payload:customer" in r.getMessage()]
    assert len(lines) == 1 and "no-key" in lines[0], lines


@pytest.mark.slow
async def test_when_the_refilling_worker_is_killed_another_takes_over(connection, settings,
                                                                      vhost, tmp_path):
    # Given two worker processes on a queue limited to 20/s, one of them refilling
    spec = QueueSpec("limited", rate_limit=LIMIT)
    topo = await declare(connection, vhost, spec, delay_levels=1)
    async with AsyncProducer(settings, topo) as producer:
        for i in range(500):
            await producer.submit("limited", {}, job_id=f"j{i}")
        await producer.flush()
    procs = [start_worker_process(tmp_path, amqp_url=settings.amqp_url, vhost=vhost,
                                  worker_id=f"lead-{i}",
                                  specs=[{"name": "limited", "rate_limit": LIMIT}], grace=5)
             for i in range(2)]

    def leaders() -> list[WorkerProcess]:
        return [p for p in procs if "refills the rate-limit tokens" in p.stderr()]

    try:
        await wait_until(lambda: len(leaders()) == 1 and len(all_starts(procs)) >= 40,
                         timeout=30, interval=0.5, what="one refiller, jobs running")
        [leader] = leaders()
        [other] = [p for p in procs if p is not leader]
        # When the leader is killed (its connection ends, the exclusive lock queue with it)
        leader.proc.kill()
        leader.proc.wait(10)
        killed = time.time()
        # Then the other worker refills within a few seconds, at the limit again
        await wait_until(lambda: "refills the rate-limit tokens" in other.stderr(), timeout=8,
                         interval=0.2, what="takeover")
        await asyncio.sleep(8.0)
        after = sorted(t for t in all_starts([other]) if t > killed)
        first = after[0] - killed
        rate = steady_rate(after, 5, len(after) - 5)
    finally:
        for p in procs:
            if p.proc.poll() is None:
                p.terminate()
    assert first < 5.0, first
    assert abs(rate - LIMIT) <= 0.1 * LIMIT, rate
    print(f"takeover: first job {first:.2f}s after the kill, then {rate:.2f} jobs/s")

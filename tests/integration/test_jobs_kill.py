"""Job events under kill -9: the timeline of a job whose worker died holding it shows the
interrupted attempt and the redelivery, and no event of a completed job is missing."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from queuewatch.jobs import Jobs, JobState
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec
from tests.helpers import declare, wait_until
from tests.workers import start_worker_process, wait_consuming

pytestmark = pytest.mark.slow
JOBS = 5_000


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_kill_9_mid_job_timeline_and_ledger_of_events(connection, settings, vhost, tmp_path,
                                                            queue_type):
    # Given a worker process holding a slow job among 5,000 quick ones
    quorum = queue_type == "quorum"
    spec = {"name": "jobs", "queue_type": queue_type, "max_priority": 0 if quorum else 10}
    topo = await declare(connection, vhost, QueueSpec(**spec), delay_levels=1)  # type: ignore[arg-type]
    url = settings.amqp_url_for()
    a = start_worker_process(tmp_path, amqp_url=url, vhost=vhost, worker_id="w-a",
                             specs=[spec])
    b = None
    try:
        await wait_consuming(a, "jobs")
        ids = ["victim"] + [f"q-{i}" for i in range(JOBS)]
        async with AsyncProducer(settings, topo) as producer:

            async def backlog() -> None:
                for job in ids[1:]:
                    await producer.submit("jobs", {"sleep": 0.002}, job_id=job)
                await producer.flush()

            filling = None
            if quorum:
                # (no priorities: first, so it runs while the backlog drains; the backlog
                # goes on being published meanwhile: on a slow machine publishing it took
                # longer than the victim's 4 s, and the kill came after it had ended)
                await producer.publish("jobs", {"sleep": 4}, job_id="victim")
                filling = asyncio.create_task(backlog())
            else:
                await backlog()
                # (last, and ahead of the backlog: the kill must come while it runs)
                await producer.publish("jobs", {"sleep": 4}, job_id="victim", priority=9)
            await wait_until(lambda: "victim" in a.runs("start"), timeout=20,
                             what="victim started")
            await asyncio.sleep(0.5)
            # When the worker is killed -9 while it runs the slow job, and another takes over
            os.kill(a.proc.pid, signal.SIGKILL)
            a.proc.wait(10)
            if filling is not None:
                await filling
        b = start_worker_process(tmp_path, amqp_url=url, vhost=vhost, worker_id="w-b",
                                 specs=[spec])
        async with Jobs(settings) as jobs:
            assert await jobs.result("victim", timeout=90) is None
            for job in ids[-50:]:
                await jobs.wait(job, timeout=60)
            statuses = [await jobs.status(job, fresh=False) for job in ids]
    finally:
        for wp in (a, b):
            if wp is not None and wp.proc.poll() is None:
                wp.terminate()
    # Then the victim's timeline shows the interrupted attempt on w-a and the redelivery on w-b
    victim = statuses[0]
    assert [(x.outcome, x.worker.name, x.redelivered) for x in victim.attempts] == [
        ("interrupted", "w-a", False), ("succeeded", "w-b", True)], victim.attempts
    # And every completed job has its accepted, started and succeeded events: none is missing
    missing = []
    for st in statuses:
        kinds = {e.kind for e in st.events}
        if st.state is not JobState.SUCCEEDED or not {"accepted", "started", "succeeded"} <= kinds:
            missing.append((st.job_id, st.state.value, sorted(kinds)))
    done_a = set(a.runs("done"))
    assert not missing, (len(missing), missing[:5])
    assert done_a, "the first worker completed no job before the kill: the test proved nothing"

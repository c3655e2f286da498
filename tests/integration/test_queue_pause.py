"""Pause and resume a queue on the real broker: every worker stops taking its jobs (running
ones finish), a worker started during the pause stays paused, resume starts them; status,
alerts and the audit log say so; refused when read-only."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from queuewatch.audit import AuditLog
from queuewatch.errors import ReadOnlyError
from queuewatch.monitor.session import open_monitor
from queuewatch.operator import pause_queue, resume_queue
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec, Topology
from queuewatch.worker import Job, Worker
from tests.cli_helpers import assert_one_line_error, qw
from tests.helpers import declare, depth, wait_until
from tests.workers import running


def make_worker(settings, topo: Topology, worker_id: str, started: list[str],  # type: ignore[no-untyped-def]
                hold: float = 0.0, concurrency: int = 4,
                finished: list[str] | None = None) -> Worker:
    worker = Worker(settings, topo, worker_id=worker_id, concurrency=concurrency, prefetch=20,
                    heartbeat_interval=0.3, metrics=False, idempotency=False)

    @worker.job("jobs")
    async def handle(job: Job) -> None:
        started.append(job.job_id)
        await asyncio.sleep(hold)
        if finished is not None:
            finished.append(job.job_id)

    return worker


def cause(worker: Worker) -> str | None:
    return worker.subscriptions["jobs"].state.cause


async def test_pause_stops_every_worker_and_resume_starts_them(connection, settings, vhost):
    topo = await declare(connection, vhost, QueueSpec("jobs"), delay_levels=1)
    started: list[str] = []
    first = make_worker(settings, topo, "pause-1", started)
    async with running(first), AsyncProducer(settings, topo) as producer:
        # Given a running worker, when the queue is paused
        await pause_queue(connection, settings, "jobs")
        await wait_until(lambda: cause(first) == "paused", timeout=5, what="worker paused")
        # Then jobs published now are not started
        for i in range(5):
            await producer.publish("jobs", {}, job_id=f"j{i}")
        # And a worker started during the pause does not consume either
        second = make_worker(settings, topo, "pause-2", started)
        async with running(second):
            assert cause(second) == "paused"
            await asyncio.sleep(2.0)
            assert started == []
            assert await depth(connection, "jobs") == 5
            # And status shows the queue paused, with no orphaned or not-consuming alert
            async with open_monitor(settings, listen=1.5) as session:
                await wait_until(lambda: session.monitor.queue_states is not None
                                 and "jobs" in session.monitor.queue_states, timeout=5,
                                 what="queue state read by the monitor")
                # (the management API's counts lag up to its stats interval, 5 s)
                snaps = []

                async def counted() -> bool:
                    snaps.append(await session.poll())
                    return any(q.name == "jobs" and q.ready == 5 for q in snaps[-1].queues)

                await wait_until(counted, timeout=15, interval=1.0, what="5 ready in the API")
                snap = snaps[-1]
            [q] = [q for q in snap.queues if q.name == "jobs"]
            assert q.paused and q.consumers == 0 and q.ready == 5
            assert "jobs" not in snap.orphaned_queues
            kinds = {a.kind for a in snap.alerts}
            assert not kinds & {"orphaned", "worker_not_consuming", "oldest_age"}, snap.alerts
            assert {w.state for w in snap.workers} == {"up"}
            assert started == []
            # When it is resumed, then both workers take the jobs
            await resume_queue(connection, settings, "jobs")
            await wait_until(lambda: sorted(started) == [f"j{i}" for i in range(5)], timeout=10,
                             what="jobs run after resume")
            await wait_until(lambda: cause(first) is None and cause(second) is None, timeout=5,
                             what="both consuming")
    # And the audit log has both actions
    entries = [(e["action"], e["outcome"], e["target"]["queue"])
               for e in AuditLog.from_settings(settings).read()]
    assert entries == [("queue_pause", "ok", "jobs"), ("queue_resume", "ok", "jobs")]


async def test_prefetched_jobs_go_back_and_running_ones_finish(connection, settings, vhost):
    # Given one slot busy with a 1.5 s job and four more jobs prefetched behind it
    topo = await declare(connection, vhost, QueueSpec("jobs"), delay_levels=1)
    started: list[str] = []
    finished: list[str] = []
    worker = make_worker(settings, topo, "pause-3", started, hold=1.5, concurrency=1,
                         finished=finished)
    async with running(worker), AsyncProducer(settings, topo) as producer:
        for i in range(5):
            await producer.publish("jobs", {}, job_id=f"j{i}")
        await wait_until(lambda: len(started) == 1, timeout=5, what="first job running")
        # When the queue is paused while it runs
        await pause_queue(connection, settings, "jobs")
        # Then the running job finishes (acked) and the four others go back unstarted
        await wait_until(lambda: finished == started, timeout=5, what="running job finished")
        await asyncio.sleep(1.0)
        assert len(started) == 1
        assert await depth(connection, "jobs") == 4
        await resume_queue(connection, settings, "jobs")
        await wait_until(lambda: len(started) == 5, timeout=15, what="rest run after resume")


async def test_pause_is_refused_read_only_and_bad_input_is_one_line(settings, vhost):
    ro = dataclasses.replace(settings, read_only=True)
    with pytest.raises(ReadOnlyError):
        await pause_queue(None, ro, "jobs")  # type: ignore[arg-type]
    env = {"QUEUEWATCH_AMQP_URL": settings.amqp_url, "QUEUEWATCH_VHOST": vhost,
           "QUEUEWATCH_STATE_DIR": str(settings.state_dir)}
    assert_one_line_error(qw("queues", "pause", "jobs", "--read-only", env=env), "read-only")
    assert_one_line_error(qw("queues", "limit", "jobs", "0", env=env), "> 0")
    assert_one_line_error(qw("queues", "limit", "jobs", "-5", env=env), "> 0")
    assert_one_line_error(qw("queues", "limit", "jobs", "10", "--per-key", "2", env=env),
                          "rate_limit_key")
    assert AuditLog.from_settings(settings).read() == []


async def test_the_cli_pauses_limits_and_resumes(connection, settings, vhost):
    topo = await declare(connection, vhost, QueueSpec("jobs"), delay_levels=1)
    env = {"QUEUEWATCH_AMQP_URL": settings.amqp_url, "QUEUEWATCH_VHOST": vhost,
           "QUEUEWATCH_STATE_DIR": str(settings.state_dir)}
    # When an operator pauses the queue and sets a limit from the command line
    for args, said in ((("pause", "jobs"), "paused 'jobs'"),
                       (("limit", "jobs", "15", "--per-key", "3", "--key", "header:x-tenant"),
                        "15 jobs/s over all workers, 3 jobs/s per header:x-tenant")):
        proc = qw("queues", *args, env=env)
        assert proc.returncode == 0 and said in proc.stdout, (proc.stdout, proc.stderr)
    # Then a worker started afterwards stays paused and knows the limit
    started: list[str] = []
    worker = make_worker(settings, topo, "cli-1", started)
    async with running(worker):
        assert cause(worker) == "paused"
        limit = worker.routes["jobs"].limiter.limit()  # type: ignore[union-attr]
        assert limit is not None and (limit.rate, limit.per_key, limit.key) == (
            15.0, 3.0, "header:x-tenant")
        proc = qw("queues", "resume", "jobs", env=env)
        assert proc.returncode == 0, proc.stderr
        await wait_until(lambda: cause(worker) is None, timeout=5, what="consuming again")
    actions = [e["action"] for e in AuditLog.from_settings(settings).read()]
    assert actions == ["queue_pause", "queue_limit", "queue_resume"]

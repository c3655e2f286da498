"""Operator actions on the real broker: cancel a stuck job, terminate a hung worker."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap

import psutil
import pytest

from queuewatch import envelope
from queuewatch.audit import AuditLog
from queuewatch.operator import OperatorError, cancel_job, terminate_worker, worker_pid
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec
from tests.helpers import declare, depth, stuck_worker, wait_until
from tests.workers import dead_letters, running

HUNG_APP = textwrap.dedent('''
    import time
    from queuewatch.topology import QueueSpec, Topology
    from queuewatch.worker import Worker

    def make(settings):
        worker = Worker(settings, Topology(queues=(QueueSpec("jobs"),), delay_levels=4),
                        worker_id="hung-1", concurrency=1, prefetch=5, idempotency=False,
                        metrics=False)

        @worker.job("jobs")
        async def handle(job):
            time.sleep(3600)  # blocks the event loop: no heartbeat, no signal handling

        return worker
''')


async def test_cancel_of_a_stuck_job_moves_it_to_the_dlq(connection, settings, vhost):
    # Given a real queuewatch worker stuck on one job
    topo = await declare(connection, vhost, QueueSpec("jobs"), delay_levels=4)
    worker, started = stuck_worker(settings, topo, "jobs", "w-stuck")
    async with running(worker), AsyncProducer(settings, topo) as producer:
        await producer.publish("jobs", {"n": 1}, job_id="stuck-job")
        await asyncio.wait_for(started.wait(), 10)
        # When the operator cancels it by job id alone (the worker is found by heartbeat)
        result = await cancel_job(connection, settings, "stuck-job")
        # Then it lands in the DLQ with the reason
        [dead] = await dead_letters(connection, "jobs", 1, timeout=10)
    assert result.worker_id == "w-stuck"
    assert dead.message_id == "stuck-job"
    assert dead.headers[envelope.H_DEAD_REASON] == "cancelled by operator"
    # And the audit log says who did what
    [entry] = AuditLog.from_settings(settings).read()
    assert (entry["action"], entry["outcome"], entry["target"]["job_id"],
            entry["target"]["worker_id"]) == ("cancel", "ok", "stuck-job", "w-stuck")


async def test_cancel_of_an_unknown_job_is_reported(connection, settings, vhost):
    await declare(connection, vhost, QueueSpec("jobs"), delay_levels=4)
    from queuewatch.errors import NotFound

    with pytest.raises(NotFound, match="not listening"):
        await cancel_job(connection, settings, "nope", worker_id="no-such-worker")
    assert AuditLog.from_settings(settings).read()[0]["outcome"] == "error"


def worker_env(settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEWATCH_")}
    env.update(QUEUEWATCH_AMQP_URL=settings.amqp_url, QUEUEWATCH_STATE_DIR=str(settings.state_dir),
               QUEUEWATCH_VHOST=settings.effective_vhost)
    return env


@pytest.mark.slow
async def test_terminate_of_a_hung_worker_requeues_its_deliveries(connection, settings, vhost,
                                                                   tmp_path):
    # Given a worker process that hangs (its event loop blocked) holding 3 deliveries
    await declare(connection, vhost, QueueSpec("jobs"), delay_levels=4)
    app = tmp_path / "hung_app.py"
    app.write_text(HUNG_APP)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "queuewatch.cli.main", "worker", f"{app}:make",
        "--processes", "1", env=worker_env(settings), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    try:
        # the worker announces itself before it hangs: learn its pid the operator's way
        pid, known = await _wait_for_worker(connection, settings, "hung-1")
        assert pid == proc.pid
        async with AsyncProducer(settings, (await _topo(settings))) as producer:
            for n in range(3):
                await producer.publish("jobs", {"n": n}, job_id=f"held-{n}")
        await wait_until(lambda: _held(connection), timeout=10, what="deliveries held")
        # When the operator terminates it (SIGTERM is ignored by the blocked loop -> SIGKILL)
        result = await asyncio.to_thread(terminate_worker, settings, pid, grace=1.0,
                                         known_pids=known, worker_id="hung-1")
        # Then the process is gone and the broker requeued all three deliveries
        assert result.signal == "SIGKILL"
        await asyncio.wait_for(proc.wait(), 10)  # (psutil reaped it: no exit status here)
        assert not psutil.pid_exists(pid)
        await wait_until(lambda: _ready(connection, 3), timeout=10, what="3 requeued")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    entries = AuditLog.from_settings(settings).read()
    assert [(e["action"], e["outcome"], e["target"]["pid"]) for e in entries] == [
        ("terminate", "ok", pid)]


async def _wait_for_worker(connection, settings, worker_id: str):  # type: ignore[no-untyped-def]
    from queuewatch.errors import NotFound

    for _ in range(10):
        try:
            return await worker_pid(connection, settings, worker_id)
        except NotFound:
            continue
    raise AssertionError(f"worker {worker_id} never sent a heartbeat")


async def _topo(settings):  # type: ignore[no-untyped-def]
    from queuewatch.topology import Topology

    return Topology(queues=(QueueSpec("jobs"),), delay_levels=4)


async def _held(connection) -> bool:  # type: ignore[no-untyped-def]
    return await depth(connection, "jobs") == 0


async def _ready(connection, n: int) -> bool:  # type: ignore[no-untyped-def]
    return await depth(connection, "jobs") == n


def test_terminate_refuses_a_process_that_is_not_a_worker(settings):
    # Given this very test process (pytest is no queuewatch worker)
    # When an operator tries to terminate it, Then it is refused and audited
    with pytest.raises(OperatorError, match="not a queuewatch worker"):
        terminate_worker(settings, os.getpid())
    assert AuditLog.from_settings(settings).read()[0]["outcome"] == "error"

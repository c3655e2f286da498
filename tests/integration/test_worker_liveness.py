"""Workers never go quiet (issue 11), on the real broker: a job queue deleted and declared again
under a running worker (classic and quorum) is consumed again within seconds, and while it
is gone the CLI and the monitor say the worker is not consuming; SIGTERM right after the
broker cancelled a consumer ends the process with exit 0 and no traceback."""

from __future__ import annotations

import asyncio
import time

import pytest

from queuewatch.monitor.session import open_monitor
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec
from queuewatch.worker import Job, Worker
from tests.helpers import Ledger, declare, depth, wait_until
from tests.workers import elapsed_since, running, start_worker_process, wait_consuming, workers_json

#: How soon a worker must consume again once its queue is back (issue 11).
RESUME_WITHIN = 10.0


def spec_for(queue_type: str) -> QueueSpec:
    return QueueSpec("jobs", queue_type=queue_type,  # type: ignore[arg-type]
                     max_priority=0 if queue_type == "quorum" else 10)


async def publish(settings, topo, ledger: Ledger, ids: list[str]) -> None:  # type: ignore[no-untyped-def]
    async with AsyncProducer(settings, topo) as producer:
        for jid in ids:
            ledger.sent.add(jid)
            await producer.publish("jobs", {"sleep": 0}, job_id=jid)
            ledger.confirmed.add(jid)


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_queue_deleted_and_declared_again_is_consumed_again(
        connection, settings, vhost, queue_type, capsys):
    spec = spec_for(queue_type)
    topo = await declare(connection, vhost, spec, delay_levels=1)
    ledger, handled_at = Ledger(), {}
    worker = Worker(settings, topo, worker_id=f"live-{queue_type}", concurrency=4,
                    heartbeat_interval=0.5)

    @worker.job("jobs")
    async def handle(job: Job) -> None:
        ledger.record_received([job.job_id])
        handled_at[job.job_id] = time.monotonic()

    async with running(worker):
        before = [f"before-{i}" for i in range(10)]
        await publish(settings, topo, ledger, before)
        await wait_until(lambda: set(before) <= set(ledger.received), what="the first 10 jobs")
        # When the queue is deleted under the running worker
        channel = await connection.channel()
        await channel.queue_delete("jobs")
        await channel.close()
        sub = worker.subscriptions["jobs"]
        await wait_until(lambda: not sub.live, timeout=5, what="the consumer cancelled")
        assert sub.state.cause in ("cancelled_by_broker", "queue_missing")
        # Then `queuewatch workers --json` shows it as not consuming, with why
        await asyncio.sleep(1.0)  # a beat sent after the cancel
        rows = await asyncio.to_thread(workers_json, vhost)
        [row] = [r for r in rows if r["worker_id"] == worker.worker_id]
        assert row["state"] == "not_consuming" and row["not_consuming"] == ["jobs"], row
        [gone] = row["consumers"]
        assert not gone["live"] and gone["cause"] in ("cancelled_by_broker", "queue_missing")
        # And so does the monitor's snapshot, with an alert that says what is going on
        async with open_monitor(settings, heartbeats=True, listen=1.5) as session:
            snap = await session.poll()
        [w] = [w for w in snap.workers if w.worker_id == worker.worker_id]
        assert w.state == "not_consuming"
        [alert] = [a for a in snap.alerts if a.kind == "worker_not_consuming"]
        assert alert.target == worker.worker_id and "'jobs'" in alert.reason
        assert "declare" in alert.reason

        # When the queue is declared again
        await declare(connection, vhost, spec, delay_levels=1)
        back = time.monotonic()
        await wait_until(lambda: sub.live, timeout=RESUME_WITHIN, interval=0.05,
                         what="the consumer back")
        live_after = elapsed_since(back)
        later = [f"later-{i}" for i in range(20)]
        await publish(settings, topo, ledger, later)
        # Then every later job is done, the first within seconds of the queue's return
        await wait_until(lambda: set(later) <= set(ledger.received), timeout=RESUME_WITHIN,
                         what="the 20 later jobs")
        first = round(min(handled_at[j] for j in later) - back, 2)
        assert worker.connected.is_set()
    with capsys.disabled():
        print(f"\n[{queue_type}] queue declared again: consumer live after {live_after}s, "
              f"first later job done after {first}s")
    assert live_after <= RESUME_WITHIN and first <= RESUME_WITHIN
    assert ledger.lost == set() and ledger.unexpected == set(), ledger.summary()
    assert await depth(connection, "jobs") == 0


async def test_sigterm_right_after_a_broker_cancel_exits_cleanly(connection, settings, vhost,
                                                                tmp_path):
    # Given a worker process with a job running
    topo = await declare(connection, vhost, QueueSpec("jobs"), delay_levels=1)
    wp = start_worker_process(tmp_path, amqp_url=settings.amqp_url, vhost=vhost,
                              worker_id="sigterm-1", specs=[{"name": "jobs"}], grace=2.0)
    try:
        await wait_consuming(wp, "jobs")
        async with AsyncProducer(settings, topo) as producer:
            await producer.publish("jobs", {"sleep": 30}, job_id="long")
        await wait_until(lambda: "long" in wp.runs(), timeout=10, what="the long job started")
        # When the broker cancels its consumer (the queue is deleted) and SIGTERM follows
        channel = await connection.channel()
        await channel.queue_delete("jobs")
        await channel.close()
        await wait_until(lambda: wp.metric("queuewatch_consumer_live", queue="jobs") == 0.0,
                         timeout=5, interval=0.1, what="the cancel seen by the worker")
        rc = await asyncio.to_thread(wp.terminate)
    finally:
        if wp.proc.poll() is None:
            wp.proc.kill()
    err = wp.stderr()
    # Then it exits 0 within its grace, without a traceback or a pending task
    assert rc == 0, err[-3000:]
    assert "Traceback" not in err and "Task was destroyed" not in err, err[-3000:]
    assert "cancelled the consumer of 'jobs'" in err

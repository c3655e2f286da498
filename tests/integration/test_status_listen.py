"""A one-shot command (``status``, ``workers``) listens for heartbeats no longer than it
needs: until every worker connection the broker shows has beaten, not a fixed 1.5 s."""

from __future__ import annotations

import time

from queuewatch.monitor.session import open_monitor
from queuewatch.topology import QueueSpec
from queuewatch.worker import Job, Worker
from tests.helpers import declare, wait_until
from tests.workers import running

LISTEN = 6.0


async def test_without_workers_it_listens_the_bounded_time_and_no_longer(settings, vhost):
    # Given no worker on the vhost, and a command that may listen up to 6 s
    started = time.monotonic()
    async with open_monitor(settings, listen=LISTEN) as session:
        opened = time.monotonic() - started
        snap = await session.poll()
    # Then it listened the bounded time (the broker lists a new worker's connection a second
    # or two late, so "no worker listed" cannot end the wait early), and not longer
    assert snap.workers == ()
    assert LISTEN * 0.9 <= opened < LISTEN + 5, opened


async def test_it_stops_listening_once_every_worker_has_beaten(connection, mgmt, settings, vhost):
    # Given a worker beating every 2 s, whose connection the management API lists (it does
    # a second or two after the connection opened)
    topo = await declare(connection, vhost, QueueSpec("work"), delay_levels=1)
    worker = Worker(settings, topo, worker_id="listen-1", heartbeat_interval=2.0, metrics=False,
                    idempotency=False)

    @worker.job("work")
    async def handle(job: Job) -> None:
        pass

    async with running(worker):
        async def listed() -> bool:
            return any(c.get("user_provided_name") == "queuewatch-worker listen-1"
                       for c in await mgmt.connections(vhost, "name,user_provided_name"))

        await wait_until(listed, timeout=20, what="the worker's connection listed")
        started = time.monotonic()
        async with open_monitor(settings, listen=LISTEN) as session:
            opened = time.monotonic() - started
            snap = await session.poll()
    # Then the snapshot has the worker, and the wait ended with its beat, not after 6 s
    assert [w.worker_id for w in snap.workers] == ["listen-1"]
    assert opened < LISTEN - 1.5, opened

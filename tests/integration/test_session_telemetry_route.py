"""The monitoring session after its heartbeat route is broken on a live link (QA of issue 11).

Deleting the telemetry exchange drops every binding to it without a word to anyone: the
session's link, its listener queue and its consumer all stay up, only the probes (and the
workers' beats) stop arriving. Before the fix the session then said "a silent link?" and
showed every worker as unknown for as long as it ran, even once the exchange was declared
again and the workers' beats were flowing through it.
"""

from __future__ import annotations

import asyncio

import pytest

from queuewatch.monitor.heartbeats import PROBE_TIMEOUT
from queuewatch.monitor.session import MonitorSession
from queuewatch.topology import QueueSpec
from tests.fault_helpers import Stopwatch, busy_worker
from tests.helpers import declare, wait_until

pytestmark = pytest.mark.timeout(120)

#: How soon the feed and the worker must be back once the route can work again.
BOUND = 10.0


async def worker_state(session: MonitorSession, worker_id: str) -> str | None:
    snap = await session.poll()
    return next((w.state for w in snap.workers if w.worker_id == worker_id), None)


@pytest.mark.parametrize("declared_again", [True, False], ids=["declared-again", "left-deleted"])
async def test_telemetry_exchange_deleted_under_a_live_session(
        settings, connection, mgmt, vhost, declared_again, capsys):
    # Given a long-running session (as the console and the exporter hold) and a busy worker
    topo = await declare(connection, vhost, QueueSpec("work"), mgmt=mgmt, delay_levels=1)
    async with busy_worker(settings, topo, "work", "w-route") as busy, \
            MonitorSession(settings, topology=topo) as session:

        async def worker_up() -> bool:
            return await worker_state(session, "w-route") == "up"
        await wait_until(worker_up, timeout=15, interval=0.2, what="the worker shown up")
        # When the telemetry exchange is deleted (and, in one case, declared again at once)
        channel = await connection.channel()
        await channel.exchange_delete(topo.telemetry_exchange)
        if declared_again:
            await channel.declare_exchange(topo.telemetry_exchange, "topic", durable=True)
        await channel.close()
        watch = Stopwatch()
        # Then the session notices that its probes stopped coming back...
        await wait_until(lambda: not session.link_state.heartbeats.live,
                         timeout=PROBE_TIMEOUT + 3, interval=0.05, what="the feed marked down")
        # ...and repairs its route: the feed is live again and the worker is up, not unknown
        await wait_until(lambda: session.link_state.heartbeats.live, timeout=BOUND,
                         interval=0.05, what="the heartbeat feed live again")
        feed_back = round(watch.elapsed, 2)
        await wait_until(worker_up, timeout=BOUND, interval=0.2, what="the worker shown up again")
        worker_back = round(watch.elapsed, 2)
        assert busy.worker.connected.is_set()
    with capsys.disabled():
        print(f"\n[telemetry exchange {'declared again' if declared_again else 'deleted'}] feed "
              f"live again after {feed_back}s, worker up after {worker_back}s")
    assert worker_back <= BOUND
    # The exchange is there again (the session declares it, as it does at connect)
    ch = await connection.channel()
    await ch.declare_exchange(topo.telemetry_exchange, passive=True)
    await ch.close()
    await asyncio.sleep(0)

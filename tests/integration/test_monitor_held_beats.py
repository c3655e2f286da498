"""A silent link that ends: the heartbeats it held back are old news (QA of the monitor's
faces after faults).

The monitor reaches RabbitMQ through loopback proxies; a real ``queuewatch worker`` process
beats on a direct connection. When the monitor's AMQP link goes silent (nothing passes,
nothing closes) the broker keeps the worker's beats for our listener queue; when the link
carries traffic again they are all delivered at once. Before the fix each flushed beat was
judged by its delivery time: a worker killed -9 during the silence was shown ``fresh`` and
``up`` for ``heartbeat_stale_seconds`` after the link came back, its last in-flight jobs
listed as stuck (with ``stuck_job`` alerts) although the broker had already requeued them.
"""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import replace

import pytest

from queuewatch.config import Thresholds
from queuewatch.monitor.session import MonitorSession
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec
from tests.fault_helpers import Stopwatch, proxied
from tests.helpers import declare, wait_until
from tests.workers import start_worker_process, wait_consuming

pytestmark = [pytest.mark.timeout(150), pytest.mark.slow]

#: Stale after 4 s (default 10 s), stuck after 3 s: the old monitor showed the dead worker
#: fresh for 4 s after the link came back, its three 60 s jobs stuck.
QUICK = Thresholds(heartbeat_stale_seconds=4.0, stuck_job_seconds=3.0)
SILENCE = 10.0


async def test_a_worker_killed_during_a_silent_link_is_not_fresh_when_it_ends(
        settings, connection, mgmt, vhost, tmp_path):
    # Given a worker process running three 60 s jobs, and a session watching it through
    # proxies (the management API stays reachable throughout)
    topo = await declare(connection, vhost, QueueSpec("work"), mgmt=mgmt, delay_levels=1)
    quick = replace(settings, thresholds=QUICK)
    wp = start_worker_process(tmp_path, amqp_url=settings.amqp_url, vhost=vhost,
                              worker_id="w-k9", specs=[{"name": "work"}])
    try:
        await wait_consuming(wp, "work")
        async with AsyncProducer(settings, topo) as producer:
            for _ in range(3):
                await producer.publish("work", {"sleep": 60})
        with proxied(quick) as net:
            session = MonitorSession(net.settings, topology=topo)
            try:
                await session.open()

                async def busy() -> bool:
                    snap = await session.poll()
                    return [(w.state, len(w.in_flight)) for w in snap.workers] == [("up", 3)]

                await wait_until(busy, timeout=20, interval=0.3, what="worker up with 3 jobs")
                # When the session's AMQP link goes silent, and the worker is killed -9 in it
                net.amqp.blackhole()
                silent = Stopwatch()
                await asyncio.sleep(2)
                os.kill(wp.proc.pid, signal.SIGKILL)
                wp.proc.wait(10)
                await asyncio.sleep(SILENCE - silent.elapsed)
                # And the link carries traffic again (the beats it held are delivered)
                net.amqp.restore()
                back = Stopwatch()
                states = []
                while True:
                    snap = await session.poll()
                    (w,) = snap.workers
                    states.append(w.state)
                    # Then the dead worker is never fresh, up or holding stuck jobs again...
                    assert w.heartbeat_state != "fresh", (back.elapsed, w)
                    assert not snap.stuck_jobs, (back.elapsed, snap.stuck_jobs)
                    assert not [a for a in snap.alerts if a.kind == "stuck_job"]
                    # ...and once silent long enough of live feed it is gone (not HUNG)
                    if w.state == "gone":
                        break
                    assert w.state == "unknown", (back.elapsed, w)
                    assert back.elapsed < 15, states
                    await asyncio.sleep(0.25)
                assert not w.hung
            finally:
                await session.aclose()
    finally:
        if wp.proc.poll() is None:
            wp.proc.kill()

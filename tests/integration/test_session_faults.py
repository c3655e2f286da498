"""The monitoring session and the exporter through link faults (issue 11, item 3).

A real worker is busy on a direct connection; the exporter (or the session) reaches the
broker through loopback proxies that we cut or black-hole. Before the fix the exporter kept
``queuewatch_workers_hung 1`` and the worker's last in-flight jobs as stuck after a blip.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from queuewatch.config import Thresholds
from queuewatch.metrics import Exporter
from queuewatch.monitor.session import MonitorSession
from queuewatch.topology import QueueSpec
from tests.fault_helpers import Stopwatch, busy_worker, proxied
from tests.helpers import declare

pytestmark = pytest.mark.timeout(150)

QUICK = Thresholds(heartbeat_stale_seconds=4.0, stuck_job_seconds=3.0)
BOUND = 10.0


async def scrape(port: int) -> dict[str, float]:
    """Unlabelled samples and the heartbeat age of w-busy, by name."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics", timeout=30)).text
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if not s.labels:
                out[s.name] = s.value
            elif s.name == "queuewatch_worker_heartbeat_age_seconds" and s.labels.get(
                    "worker") == "w-busy":
                out["w-busy_age"] = s.value
    return out


def healthy(m: dict[str, float]) -> bool:
    return (m.get("queuewatch_up") == 1 and m.get("queuewatch_heartbeats_up") == 1
            and m.get("queuewatch_workers_hung") == 0 and m.get("queuewatch_workers_up") == 1
            and m.get("queuewatch_stuck_jobs_overall") == 0 and m.get("w-busy_age", 99) < 3)


def never_judged_from_a_dead_feed(m: dict[str, float]) -> None:
    assert m.get("queuewatch_workers_hung", 0) == 0, m
    assert m.get("queuewatch_stuck_jobs_overall", 0) == 0, m


async def test_exporter_after_an_8s_cut(settings, connection, mgmt, vhost):
    # Given an exporter through proxies and a worker doing 20 jobs/s on a direct connection
    topo = await declare(connection, vhost, QueueSpec("work"), mgmt=mgmt, delay_levels=2)
    quick = replace(settings, thresholds=QUICK)
    with proxied(quick, http_timeout=2) as net:
        exporter = await asyncio.to_thread(Exporter, net.settings, topology=topo, max_age=0.3)
        try:
            port = exporter.start(0)
            async with busy_worker(quick, topo, "work", "w-busy"):
                deadline = time.monotonic() + 30
                while not healthy(m := await scrape(port)):
                    assert time.monotonic() < deadline, m
                    await asyncio.sleep(0.3)
                # When the exporter's link to the broker is cut for 8 s
                net.cut()
                cut = Stopwatch()
                ages = []
                while cut.elapsed < 8:
                    m = await scrape(port)
                    never_judged_from_a_dead_feed(m)
                    ages.append(m.get("queuewatch_snapshot_age_seconds"))
                    await asyncio.sleep(0.5)
                # Then it says it cannot poll, and how old its last good snapshot is
                assert m["queuewatch_up"] == 0
                assert "queuewatch_workers_hung" not in m and "queuewatch_workers_up" not in m
                assert ages[-1] is not None and ages[-1] > 5, ages
                # When the link is back, Then within a bounded time the truth is exported
                net.restore()
                back = Stopwatch()
                while not healthy(m := await scrape(port)):
                    never_judged_from_a_dead_feed(m)
                    assert back.elapsed < BOUND, m
                    await asyncio.sleep(0.1)
                print(f"\nexporter: truthful {back.elapsed:.1f}s after an 8s cut was restored")
                for _ in range(6):  # and stays so
                    await asyncio.sleep(0.5)
                    m = await scrape(port)
                    assert healthy(m), m
                assert m["queuewatch_snapshot_age_seconds"] < 1.0
        finally:
            await asyncio.to_thread(exporter.close)


async def test_session_on_a_silent_link_long_enough_to_reconnect(settings, connection, mgmt,
                                                                  vhost):
    # Given a session with a short AMQP heartbeat (2 s: a silent link is declared dead after
    # (2+1)*3 = 9 s by aiormq; 33 s with the default 10 s), the management API reachable
    topo = await declare(connection, vhost, QueueSpec("work"), mgmt=mgmt, delay_levels=2)
    quick = replace(settings, thresholds=QUICK)
    with proxied(quick, heartbeat=2) as net:
        session = MonitorSession(net.settings, topology=topo)
        try:
            async with busy_worker(quick, topo, "work", "w-busy"):
                await session.open()
                await asyncio.sleep(1.5)
                first = await session.poll()
                assert [w.heartbeat_state for w in first.workers] == ["fresh"]
                # When the AMQP link goes silent for 16 s
                net.amqp.blackhole()
                silent = Stopwatch()
                feed_down = link_down = None
                while silent.elapsed < 16:
                    snap = await session.poll()
                    state = session.link_state
                    if feed_down is None and state.heartbeats and not state.heartbeats.live:
                        feed_down = silent.elapsed
                    if link_down is None and not state.amqp:
                        link_down = silent.elapsed
                    # Then nobody is hung or stuck, whatever the silence lasts
                    assert not any(w.hung for w in snap.workers), snap.workers
                    assert not snap.stuck_jobs, snap.stuck_jobs
                    await asyncio.sleep(0.25)
                # (the probe: ~3 s; aiormq's grace: 9 s, checked every second)
                assert feed_down is not None and feed_down < 5, feed_down
                assert link_down is not None and link_down < 15, link_down
                assert {w.heartbeat_state for w in snap.workers} == {"unknown"}
                assert [a.kind for a in snap.alerts if a.target == "heartbeats"] == [
                    "heartbeats_lost"]
                # When it carries traffic again, Then the session reconnects and the worker
                # is fresh again
                net.amqp.restore()
                back = Stopwatch()
                while True:
                    snap = await session.poll()
                    w = snap.workers[0]
                    if w.heartbeat_state == "fresh" and w.heartbeat_age < 3:
                        break
                    assert back.elapsed < BOUND + 10, (w, session.link_state)
                    await asyncio.sleep(0.25)
                assert session.link.connects >= 2
                print(f"\nsession: feed down {feed_down:.1f}s and link dropped {link_down:.1f}s "
                      f"into a silent link; fresh {back.elapsed:.1f}s after it ended")
        finally:
            await session.aclose()


async def test_a_channel_that_takes_longer_than_asked_does_not_drop_the_link(settings, vhost):
    from queuewatch.broker.errors import LinkLost
    from queuewatch.broker.link import BrokerLink

    # Given a live link through a proxy
    with proxied(settings) as net:
        link = BrokerLink(net.settings, name="qwt-slow-channel")
        try:
            await link.open()
            # When a channel cannot be opened within the caller's short budget (the link is
            # silent for a moment: a busy loop or a slow broker look the same)
            net.amqp.blackhole()
            with pytest.raises(LinkLost, match=r"within 0\.5s"):
                await link.channel(timeout=0.5)
            net.amqp.restore()
            # Then the link was not torn down for it: same connection, channels open again
            channel = await link.channel(timeout=5)
            await channel.close()
            assert link.alive and link.connects == 1
        finally:
            await link.close()

"""The console after faults next to the ones ``test_live_faults`` covers: a worker process
killed -9 while the console's AMQP link is silent (QA of the console after faults).

A real ``queuewatch worker`` beats on a direct connection; the console reaches RabbitMQ
through loopback proxies. Before the fixes:

- when the silent link carried traffic again, the beats it had held were judged by their
  delivery time: the dead worker showed ``ok`` with a fresh heartbeat for
  ``heartbeat_stale_seconds``, its last in-flight jobs listed as stuck;
- the summary band counted every worker as busy or idle whatever its state: the worker,
  ``gone`` with its last beat listing 3 jobs, read ``workers 1 busy/0 idle`` until it was
  forgotten (5 minutes); while the heartbeat feed was down it counted unknown workers too.
"""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import replace

import pytest

from queuewatch.config import Thresholds
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec
from queuewatch.tui.app import QueuewatchApp
from queuewatch.tui.live import LiveSource
from queuewatch.tui.widgets.queues_view import summary_items
from tests.fault_helpers import Stopwatch, proxied
from tests.helpers import declare
from tests.tui.live_helpers import live_app, wait_for
from tests.workers import start_worker_process, wait_consuming

pytestmark = [pytest.mark.timeout(150), pytest.mark.slow]

SIZE = (120, 30)
QUICK = Thresholds(heartbeat_stale_seconds=4.0, stuck_job_seconds=3.0)


def band_workers(app: QueuewatchApp) -> str:
    assert app.snapshot is not None
    return dict((label, value) for label, value, _ in summary_items(app.snapshot))["workers"]


def worker(app: QueuewatchApp):  # type: ignore[no-untyped-def]
    assert app.snapshot is not None
    (w,) = app.snapshot.workers
    return w


async def test_a_worker_killed_during_a_silent_link_shows_unknown_then_gone(
        settings, connection, mgmt, vhost, tmp_path):
    # Given a worker process running three 60 s jobs, and the console watching it
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
            app = live_app(net.settings, LiveSource(net.settings, topology=topo))
            async with app.run_test(size=SIZE) as pilot:
                await wait_for(pilot, lambda: app.snapshot is not None and app.snapshot.workers
                               and len(worker(app).in_flight) == 3 and worker(app).state == "up",
                               timeout=30, what="worker up with 3 jobs")
                assert band_workers(app) == "1 busy/0 idle"
                # When the console's AMQP link goes silent and the worker is killed -9 in it
                net.amqp.blackhole()
                await wait_for(pilot, lambda: not app.snapshot.workers_known, timeout=8,
                               what="feed down")
                # Then while the feed is down the band does not call the worker busy
                assert band_workers(app) == "1 unknown"
                os.kill(wp.proc.pid, signal.SIGKILL)
                await asyncio.to_thread(wp.proc.wait, 10)
                await pilot.pause(6)
                # When the link carries traffic again (and delivers the beats it held)
                net.amqp.restore()
                back = Stopwatch()
                while True:
                    w = worker(app)
                    # Then the dead worker is never ok or busy again, none of its jobs stuck
                    if app.snapshot.workers_known:
                        assert w.heartbeat_state != "fresh", (back.elapsed, w)
                        assert not app.snapshot.stuck_jobs, app.snapshot.stuck_jobs
                        assert "busy" not in band_workers(app), band_workers(app)
                    if w.state == "gone":
                        break
                    assert back.elapsed < 20, w
                    await pilot.pause(0.2)
                # And it is gone, and the band says so
                assert band_workers(app) == "1 gone"
    finally:
        if wp.proc.poll() is None:
            wp.proc.kill()


@pytest.mark.slow
async def test_a_management_api_that_takes_requests_and_never_answers_is_said_stale(
        settings, vhost):
    from queuewatch.tui.widgets.queues_view import QueuesView
    from queuewatch.tui.widgets.status import StatusBar

    # Given the console polling every 0.5 s through a proxy (HTTP timeout 10 s, the default)
    with proxied(settings) as net:
        app = live_app(net.settings)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: app.polls_done >= 2, timeout=30, what="two polls")
            header = lambda: str(app.query_one(StatusBar).render_text())  # noqa: E731
            assert "● connected" in header()
            # When the management API goes silent: connections are taken, nothing answers
            net.http.blackhole()
            silent = Stopwatch()
            # Then within a few seconds (long before the 10 s HTTP timeout fails the poll)
            # the header no longer says connected but how old the data is, on 80 columns,
            # and the views are dimmed
            await wait_for(pilot, lambda: "stale" in header() and app.query_one(
                "#views").has_class("stale"), timeout=8, what="stale header and views")
            assert silent.elapsed < 6, silent.elapsed
            assert app.error is None  # (the poll has not failed yet)
            assert "● connected" not in header()
            assert app.query_one("#views").has_class("stale")
            assert "stale" in str(app.query_one(QueuesView).query_one("#queues-help").render())
            # When it answers again, Then connected and nothing stale
            net.http.restore()
            await wait_for(pilot, lambda: "● connected" in header() and not app.query_one(
                "#views").has_class("stale"), timeout=20, what="connected again")


async def test_a_broker_unreachable_at_start_is_not_a_vhost_without_queues(settings, connection,
                                                                             vhost):
    from queuewatch.tui.widgets.queues_view import QueuesView
    from queuewatch.tui.widgets.status import AlertsStrip, StatusBar

    channel = await connection.channel()
    await channel.declare_queue("orders", durable=True)
    # Given a console started while the management API cannot be reached
    with proxied(settings) as net:
        net.http.cut()
        app = live_app(net.settings)
        async with app.run_test(size=(80, 24)) as pilot:
            help_line = lambda: str(app.query_one(QueuesView).query_one(  # noqa: E731
                "#queues-help").render())
            await wait_for(pilot, lambda: app.failures >= 2, timeout=20, what="failed polls")
            # Then it says it is disconnected, and claims no queue count and no alert state
            assert "disconnected" in str(app.query_one(StatusBar).render_text())
            assert "0 of 0 queues" not in help_line() and "no data yet" in help_line()
            assert "no active alerts" not in str(app.query_one(AlertsStrip).render())
            # When the API answers, Then the queues are there
            net.http.restore()
            await wait_for(pilot, lambda: "1 of 1 queues" in help_line(), timeout=20,
                           what="the queue listed")


async def test_a_queue_detail_says_stale_during_an_outage_and_gone_after_a_delete(
        settings, connection, vhost):
    from textual.widgets import Static

    from queuewatch.tui.screens.queue_detail import QueueDetailScreen

    channel = await connection.channel()
    await channel.declare_queue("orders", durable=True)
    # Given the console showing the detail of "orders" (a queue with no consumer)
    with proxied(settings) as net:
        app = live_app(net.settings)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: app.polls_done >= 2, timeout=30, what="two polls")
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, QueueDetailScreen),
                           timeout=5, what="the detail")
            screen = app.screen
            assert isinstance(screen, QueueDetailScreen)
            stale_line = screen.query_one("#detail-stale", Static)
            text = lambda part: str(screen.query_one(part, Static).render())  # noqa: E731
            assert not stale_line.has_class("visible")
            # When the management API cannot be reached
            net.http.cut()
            # Then the detail (which has no header) says its numbers are old and dims them
            await wait_for(pilot, lambda: stale_line.has_class("visible"), timeout=10,
                           what="the detail marked stale")
            assert "stale" in text("#detail-stale") and "as of the last poll" in text(
                "#detail-stale")
            assert screen.query_one("#detail-body").has_class("stale")
            # When it answers again, Then the mark goes
            net.http.restore()
            await wait_for(pilot, lambda: not stale_line.has_class("visible"), timeout=20,
                           what="the stale mark gone")
            assert not screen.query_one("#detail-body").has_class("stale")
            # When the queue is deleted, Then the detail says so and keeps none of its facts
            await channel.queue_delete("orders")
            await wait_for(pilot, lambda: "no longer exists" in text("#detail-stats"),
                           timeout=20, what="the queue gone")
            assert "Limits" not in text("#detail-limits")
            assert "Alerts" not in text("#detail-alerts")

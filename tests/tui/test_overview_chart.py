"""The Queues view's overview chart: the vhost's totals over time, summed once per poll by the
monitor's history, shown by itself from 40 rows, toggled with ``c``, kept across restarts.

Unit test of the totals series (no broker), Pilot tests on canned data, and one test on the
real broker that runs the console twice (the pattern of test_chart_history.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import aio_pika

from queuewatch.config import Settings
from queuewatch.monitor.history import QueueHistory
from queuewatch.topology import QueueSpec
from queuewatch.tui import make_app
from queuewatch.tui.canned import T0, demo_snapshot
from queuewatch.tui.chart import GAP
from queuewatch.tui.live import LiveSource
from queuewatch.tui.source import SnapshotSource
from queuewatch.tui.widgets.overview_chart import OverviewChart
from queuewatch.tui.widgets.queues_view import summary_band
from queuewatch.tui.widgets.time_chart import TimeChart
from tests.helpers import declare
from tests.tui.live_helpers import live_app, wait_for


def test_totals_are_the_job_queues_summed_once_per_poll():
    # Given three polls of the canned broker (job queues, DLQs, a delay level), the second
    # with every queue down
    snap = demo_snapshot(0)
    down = tuple(dataclasses.replace(q, ready=None, unacked=None) for q in snap.queues)
    history = QueueHistory(10)
    history.record(T0, snap.queues)
    history.record(T0 + 5, down)
    history.record(T0 + 10, snap.queues)
    # Then the totals have a point per poll that saw the queues, none for the poll that did not
    totals = history.vhost_totals("demo")
    assert [p.taken_at for p in totals] == [T0, T0 + 10]
    # And they are the summary band's numbers: job queues only (no DLQ, no delay level)
    jobs = [q for q in snap.queues if not q.is_dlq and not q.name.startswith("queuewatch.")]
    assert totals[-1].ready == sum(q.ready or 0 for q in jobs) > 0
    assert totals[-1].unacked == sum(q.unacked or 0 for q in jobs)
    assert abs(totals[-1].ack_rate - sum(q.ack_rate + q.no_ack_rate for q in jobs)) < 0.01
    band = summary_band(snap).plain
    assert f"ready {totals[-1].ready}" in band
    # And a totals series is not a queue: no queue lookup finds it, another vhost has none
    assert history.vhost_totals("other") == ()
    assert history.get("celery") and len(history.get("celery")) == 2


def _app(polls: int = 6):  # type: ignore[no-untyped-def]
    """The canned console with ``polls`` polls of history, a minute apart at the end."""
    source = SnapshotSource([demo_snapshot(polls)], vhost="demo")
    for k in range(polls):
        source.record_history(T0 + 5 * k, demo_snapshot(k).queues)
    return make_app(Settings(), source, clock=lambda: T0 + 5 * polls, poll_interval=3600)


async def test_hidden_at_80x24_until_c_and_shown_from_40_rows():
    app = _app()
    async with app.run_test(size=(80, 24)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        chart = app.screen.query_one(OverviewChart)
        # Given a standard terminal: the chart does not take the table's rows
        assert not chart.display
        # When c is pressed: it is shown, with the totals and a time axis in seconds/minutes
        await pilot.press("c")
        await pilot.pause()
        assert chart.display
        title = str(app.screen.query_one("#overview-ready-title").render())
        ready = summary_band(demo_snapshot(6)).plain.split("ready ")[1].split()[0]
        assert title == f"Ready {ready} · max {ready} · 1m"
        rows = str(app.screen.query_one("#overview-in", TimeChart).render()).splitlines()
        assert rows[-1].startswith("-1m") and rows[-1].rstrip().endswith("now")
        assert any(ch in "▁▂▃▄▅▆▇█" for ch in "".join(rows[:-1]))
        # And c again hides it
        await pilot.press("c")
        await pilot.pause()
        assert not chart.display

    app = _app()
    async with app.run_test(size=(120, 45)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        chart = app.screen.query_one(OverviewChart)
        # Given 45 rows: shown without asking, and c hides it
        assert chart.display
        await pilot.press("c")
        await pilot.pause()
        assert not chart.display


async def test_overview_history_survives_a_restart_with_a_gap(connection, settings, vhost):
    # Given a queue with messages, and the console run once for a few polls
    await declare(connection, vhost, QueueSpec("orders"))
    channel = await connection.channel()
    for _ in range(7):
        await channel.default_exchange.publish(aio_pika.Message(b"x"), routing_key="orders")
    first_source = LiveSource(settings, heartbeats=False)
    app = live_app(settings, first_source)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: len(first_source.totals()) >= 4
                       and first_source.totals()[-1].ready == 7, what="4 polls with 7 ready")
        first_run = list(first_source.totals())
    await asyncio.sleep(4)  # the console is closed: no polls

    # When it is started again
    started = time.time()
    source = LiveSource(settings, heartbeats=False)
    app = live_app(settings, source)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: len([p for p in source.totals()
                                           if p.taken_at >= started]) >= 3, what="3 new polls")
        await pilot.pause(0.6)  # one more poll draws what the test reads below
        points = source.totals()
        # Then the first run's totals come first, then this run's
        kept = points[:len(first_run)]
        assert all(abs(a.taken_at - b.taken_at) < 0.1 for a, b in zip(kept, first_run, strict=True))
        assert [p.ready for p in kept] == [p.ready for p in first_run]
        # And the Queues view's chart (shown by itself at 48 rows) draws them, the closed
        # time as a gap, on a time axis
        chart = app.screen.query_one(OverviewChart)
        assert chart.display
        text = str(chart.query_one("#overview-ready", TimeChart).render()).splitlines()
        assert GAP in text[-2] and text[-1].rstrip().endswith("now")
        title = str(chart.query_one("#overview-ready-title").render())
        assert title.startswith("Ready 7 · max 7 · ") and "polls" not in title


def test_overview_snapshot_200x50(snap_compare):
    async def settle(pilot):  # type: ignore[no-untyped-def]
        pilot.app.animation_level = "none"
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.pause()

    # Six polls of canned history: the three charts over the Queues table, a 1m axis
    assert snap_compare(_app(), terminal_size=(200, 50), run_before=settle)

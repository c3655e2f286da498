"""The console says when polls are slower than the interval and it polls less often:
``polling every 13s (8.4s per poll at N queues; interval 5s)`` in the header, gone again
once polls are quick."""

from __future__ import annotations

from dataclasses import replace

from queuewatch.config import Settings
from queuewatch.monitor import pacing
from queuewatch.tui import make_app
from queuewatch.tui.canned import demo_snapshot
from queuewatch.tui.live import LiveSource
from queuewatch.tui.source import SnapshotSource
from queuewatch.tui.widgets.status import StatusBar
from tests.helpers import wait_until
from tests.many_queues import declare_many
from tests.tui.live_helpers import wait_for


async def test_the_header_says_the_interval_stretched_and_when_it_is_back():
    # Given a source whose first snapshot took 8.4 s to poll, the next 0.2 s
    slow = replace(demo_snapshot(0), poll_seconds=8.4)
    quick = replace(demo_snapshot(1), poll_seconds=0.2)
    source = SnapshotSource([slow, quick], vhost="demo")
    app = make_app(Settings(), source, poll_interval=5.0)
    async with app.run_test(size=(200, 30)) as pilot:
        await wait_for(pilot, lambda: app.polls_done == 1 and not app.main.query_one(
            StatusBar).polling, what="the first poll")
        await pilot.pause(0.1)
        # Then the header says the console polls every 13 s and why
        header = str(app.main.query_one(StatusBar).render_text())
        n = len(slow.queues)
        assert f"polling every 13s (8.4s per poll at {n:,} queues; interval 5s)" in header
        # When the next poll (asked for now) is quick
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: app.polls_done == 2 and not app.main.query_one(
            StatusBar).polling, what="the second poll")
        await pilot.pause(0.1)
        # Then the header no longer says so
        assert "polling every" not in str(app.main.query_one(StatusBar).render_text())


async def test_a_live_console_at_2000_queues_says_its_polls_outlast_the_interval(
        connection, mgmt, settings, vhost, monkeypatch):
    # Given 2,000 queues on the real broker, a console polling every 0.1 s (shorter than a
    # poll of them), and stretching allowed for polls that short (by default polls under
    # 5 s never stretch the interval)
    monkeypatch.setattr(pacing, "STRETCH_AFTER", 0.0)
    await declare_many(connection, 2_000)

    async def listed() -> bool:
        return len(await mgmt.queues_unpaged(vhost, ("name",))) >= 2_000

    await wait_until(listed, timeout=60, interval=0.5, what="2,000 queues listed")
    app = make_app(settings, LiveSource(settings, heartbeats=False), poll_interval=0.1)
    async with app.run_test(size=(220, 30)) as pilot:
        bar = app.main.query_one(StatusBar)
        # When it has polled
        await wait_for(pilot, lambda: bar.pace is not None, what="a paced poll")
        await pilot.pause(0.1)
        # Then the header says how often it polls, how long a poll takes and at how many
        # queues, and the pause it waits is 1.5x the poll
        header = str(bar.render_text())
        assert bar.pace is not None and bar.pace.stretched, bar.pace
        assert "polling every" in header and "queues; interval 0.1s)" in header, header
        assert bar.pace.poll_seconds is not None
        assert bar.pace.pause == pacing.STRETCH_FACTOR * bar.pace.poll_seconds

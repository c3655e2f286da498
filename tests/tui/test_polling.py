"""Polls never overlap, and the header counts down to the retry (no broker: canned data)."""

from __future__ import annotations

import asyncio

from queuewatch.config import Settings
from queuewatch.errors import BrokerUnavailable
from queuewatch.monitor.model import Snapshot
from queuewatch.tui import make_app
from queuewatch.tui.canned import demo_snapshot
from queuewatch.tui.source import SnapshotSource
from queuewatch.tui.widgets.status import StatusBar


class SlowSource(SnapshotSource):
    """Canned snapshots that take a while to arrive; counts overlapping polls."""

    def __init__(self, fail_first: int = 0) -> None:
        super().__init__([demo_snapshot(0)], vhost="demo")
        self.running = 0
        self.max_running = 0
        self.fail_first = fail_first

    async def poll(self) -> Snapshot:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await asyncio.sleep(0.2)
            if self.polls < self.fail_first:
                self.polls += 1
                raise BrokerUnavailable("cannot reach the management API (test)")
            return await super().poll()
        finally:
            self.running -= 1


async def test_polls_never_overlap_even_when_asked_to_refresh_repeatedly():
    source = SlowSource()
    app = make_app(Settings(), source, poll_interval=0.05)
    async with app.run_test() as pilot:
        # When refresh is pressed again and again while polls take 0.2 s each
        for _ in range(15):
            await pilot.press("ctrl+r")
            await pilot.pause(0.03)
        await pilot.pause(0.5)
        # Then several polls ran, one at a time
        assert source.polls >= 2
        assert source.max_running == 1


async def test_failed_polls_count_down_then_recover():
    source = SlowSource(fail_first=2)
    app = make_app(Settings(), source, poll_interval=0.5)
    async with app.run_test() as pilot:
        while app.failures == 0:
            await pilot.pause(0.05)
        text = str(app.query_one(StatusBar).render_text())
        assert "disconnected" in text and "retry in" in text
        while app.snapshot is None:
            await pilot.pause(0.1)
        # Then after two failures the third poll brings the data and clears the error
        assert app.error is None and app.failures == 0
        assert "connected" in str(app.query_one(StatusBar).render_text())

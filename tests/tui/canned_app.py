"""Build the console on canned snapshots (deterministic: fixed data, fixed clock)."""

from __future__ import annotations

from queuewatch.config import Settings
from queuewatch.tui import make_app
from queuewatch.tui.app import QueuewatchApp
from queuewatch.tui.canned import T0, demo_dead_letters, demo_snapshot
from queuewatch.tui.source import SnapshotSource


def canned_app(read_only: bool = False, steps: int = 1) -> QueuewatchApp:
    source = SnapshotSource(
        [demo_snapshot(i) for i in range(steps)], vhost="demo",
        dead_letters={"thumbnails.dlq": demo_dead_letters(4)},
    )
    settings = Settings(read_only=read_only)
    # A long poll interval: one poll, then nothing moves while the screenshot is taken.
    return make_app(settings, source, clock=lambda: T0 + 5 * steps, poll_interval=3600)

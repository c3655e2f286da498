"""A fixed listing of schedules for the Schedules view's snapshot tests."""

from __future__ import annotations

from textual.pilot import Pilot

from queuewatch.config import Settings
from queuewatch.schedules.spec import Schedule
from queuewatch.schedules.view import ScheduleListing, ScheduleView
from queuewatch.tui import make_app
from queuewatch.tui.app import QueuewatchApp
from queuewatch.tui.canned import T0, demo_snapshot
from queuewatch.tui.schedules_source import CannedSchedules
from queuewatch.tui.source import SnapshotSource


def demo_listing(now: float, *, running: bool = True) -> ScheduleListing:
    ms = int(now * 1000)
    s = [Schedule("nightly-report", "reports", cron="0 3 * * *", timezone="Europe/Paris",
                  missed="fire_once"),
         Schedule("heartbeat", "pings", every=30),
         Schedule("invoice-sweep", "billing", cron="*/15 * * * *"),
         Schedule("cleanup", "maintenance", every=3600)]
    views = [
        ScheduleView("cleanup", "maintenance", s[3].when, True, "skip", "cli", ms - 7_200_000,
                     "cleanup@x", ms - 7_200_000, "succeeded", None, s[3]),
        ScheduleView("heartbeat", "pings", s[1].when, False, "skip", "file", ms - 12_000,
                     "heartbeat@x", ms - 12_000, "running", ms + 18_000, s[1]),
        ScheduleView("invoice-sweep", "billing", s[2].when, False, "skip", "api", ms - 300_000,
                     "invoice-sweep@x", ms - 300_000, "dead_lettered", ms + 600_000, s[2]),
        ScheduleView("nightly-report", "reports", s[0].when, False, "fire_once", "file",
                     ms - 50_400_000, "nightly-report@x", ms - 50_400_000, "failed",
                     ms + 36_000_000, s[0]),
    ]
    return ScheduleListing(views, "ops-1-4242", running)


def schedules_app(*, running: bool = True, read_only: bool = False) -> QueuewatchApp:
    source = SnapshotSource([demo_snapshot(0)], vhost="demo")
    source.schedules = CannedSchedules(demo_listing(T0, running=running))  # type: ignore[attr-defined]
    return make_app(Settings(read_only=read_only), source, clock=lambda: T0, poll_interval=3600)


SIZES = {"80x24": (80, 24), "200x50": (200, 50)}


async def settle(pilot: Pilot) -> None:  # type: ignore[type-arg]
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()  # a table shown for the first time fits its width after a refresh

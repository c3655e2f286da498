"""The Schedules view (8) on the real broker: every schedule with its last run, outcome and
next run, the scheduler that leads (or "no scheduler running"); pause, add and change
through the same core as the CLI — each confirmed, audited, bad input one line that changes
nothing; refused under --read-only."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

from queuewatch.config import Settings
from queuewatch.schedules import Schedule, Scheduler, ScheduleStore, with_store
from queuewatch.topology import QueueSpec, Topology
from queuewatch.tui.screens.dialogs import ConfirmScreen
from queuewatch.tui.screens.schedule_edit import ScheduleEditScreen
from queuewatch.tui.widgets.keyed_table import KeyedTable
from queuewatch.tui.widgets.schedules_view import SchedulesView
from tests.helpers import declare
from tests.tui.live_helpers import live_app, wait_for

SIZE = (120, 36)


def _leader(app) -> str:  # type: ignore[no-untyped-def]
    return str(app.query_one("#schedules-leader").render())


def _row(app, name: str) -> str:  # type: ignore[no-untyped-def]
    table = app.query_one(SchedulesView).query_one(KeyedTable)
    if name not in table.keys:
        return ""
    return " ".join(str(c) for c in table.get_row(name))


def _audit(settings: Settings) -> list[dict]:  # type: ignore[type-arg]
    path = settings.audit_log_path
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def _names(settings: Settings) -> list[str]:
    async def names(store: ScheduleStore) -> list[str]:
        return sorted(store.book.entries)
    return await with_store(settings, names)


async def test_schedules_view_shows_runs_and_changes_them_like_the_cli(settings, connection, vhost):
    # Given a 1-second schedule fired by a running scheduler
    await declare(connection, vhost, QueueSpec("rt"))
    raw = (Schedule("pulse", "rt", every=1, payload={"n": 1}).definition(),)
    scheduler = Scheduler(settings, Topology(queues=(QueueSpec("rt"),), schedules=raw), name="lead")
    async with scheduler:
        run = asyncio.create_task(scheduler.run())
        app = live_app(settings)
        async with app.run_test(size=SIZE) as pilot:
            # When the operator opens the Schedules view
            await pilot.press("8")
            view = app.query_one(SchedulesView)
            view.interval = 1.0
            await wait_for(pilot, lambda: "ago" in _row(app, "pulse"), what="pulse's last run")
            # Then it shows its timing, state, last run, outcome, next run and the leader
            row = _row(app, "pulse")
            assert "every 1s" in row and "active" in row and "queued" in row and "in " in row
            await wait_for(pilot, lambda: "lead leads" in _leader(app), what="the leader")
            # When it is paused (p), confirmed
            await pilot.press("p")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
            assert "Pause schedule pulse" in str(app.screen.query_one("#dialog-detail").render())
            await pilot.press("y")
            await wait_for(pilot, lambda: "paused" in _row(app, "pulse"), what="shown paused")
            assert any(e["action"] == "schedules.pause" for e in _audit(settings))
            # When a schedule is added with an invalid cron expression, then a zero interval
            await pilot.press("a")
            await wait_for(pilot, lambda: isinstance(app.screen, ScheduleEditScreen), what="dialog")
            await pilot.press(*"nightly", "tab", *"rt", "tab", *"61 * * * *", "enter")
            error = app.screen.query_one("#schedule-error")
            await wait_for(pilot, lambda: "invalid cron expression" in str(error.render()),
                           what="the cron error")
            assert str(error.render()).count("\n") == 0  # one line
            cron = app.screen.query_one("#sched-cron")
            cron.value = ""  # type: ignore[attr-defined]
            app.screen.query_one("#sched-every").value = "0"  # type: ignore[attr-defined]
            await pilot.press("enter")
            await wait_for(pilot, lambda: "every must be" in str(error.render()),
                           what="the interval error")
            # Then nothing was written
            assert await _names(settings) == ["pulse"]
            # When the interval is fixed and the addition confirmed, it is written
            app.screen.query_one("#sched-every").value = "60"  # type: ignore[attr-defined]
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm add")
            await pilot.press("y")
            await wait_for(pilot, lambda: "every 60s" in _row(app, "nightly"), what="added")
            # When it is changed (e) to a cron expression in a time zone
            app.query_one(SchedulesView).query_one(KeyedTable).move_cursor(
                row=app.query_one(SchedulesView).query_one(KeyedTable).keys.index("nightly"))
            await pilot.press("e")
            await wait_for(pilot, lambda: isinstance(app.screen, ScheduleEditScreen), what="edit")
            app.screen.query_one("#sched-every").value = ""  # type: ignore[attr-defined]
            app.screen.query_one("#sched-cron").value = "0 3 * * *"  # type: ignore[attr-defined]
            app.screen.query_one("#sched-timezone").value = "Europe/Paris"  # type: ignore[attr-defined]
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
            assert "Change schedule nightly" in str(app.screen.query_one("#dialog-detail").render())
            await pilot.press("y")
            await wait_for(pilot, lambda: "Europe/Paris" in _row(app, "nightly"), what="changed")
            actions = [e["action"] for e in _audit(settings)]
            assert actions.count("schedules.add") == 1 and actions.count("schedules.change") == 1
            # When the scheduler stops, the view says no scheduler runs
            scheduler.stop()
            await run
            await scheduler.close()
            await wait_for(pilot, lambda: "no scheduler running" in _leader(app), what="no leader")


async def test_schedules_view_refuses_changes_under_read_only(settings, connection, vhost):
    await declare(connection, vhost, QueueSpec("rt"))

    async def add(store: ScheduleStore) -> None:
        await store.put(Schedule("pulse", "rt", every=5))
    await with_store(settings, add)
    app = live_app(replace(settings, read_only=True))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("8")
        await wait_for(pilot, lambda: "every 5s" in _row(app, "pulse"), what="listed")
        for key in ("a", "p", "x"):
            await pilot.press(key)
            await pilot.pause(0.3)
            assert not isinstance(app.screen, (ConfirmScreen, ScheduleEditScreen))
        assert "read-only" in str(app.query_one("#schedules-help").render())
    assert await _names(settings) == ["pulse"]
    assert not _audit(settings)

"""Snapshots of the Schedules view (8) on a fixed listing, at 80×24 and 200×50: with a
scheduler leading, with none running (the warning line), and the add dialog with bad input
(one line, nothing changed)."""

from __future__ import annotations

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from tests.tui.schedules_canned import SIZES, schedules_app, settle


@pytest.fixture(params=sorted(SIZES))
def size(request: pytest.FixtureRequest) -> tuple[int, int]:
    return SIZES[request.param]


def pressing(*keys: str):  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot) -> None:  # type: ignore[type-arg]
        await settle(pilot)
        await pilot.press(*keys)
        await settle(pilot)
    return run_before


@pytest.mark.parametrize("running", [True, False], ids=["leading", "no-scheduler"])
def test_schedules_view(snap_compare, size, running):
    assert snap_compare(schedules_app(running=running), terminal_size=size,
                        run_before=pressing("8"))


def test_add_dialog_with_an_invalid_cron_expression(snap_compare, size):
    async def bad_cron(pilot: Pilot) -> None:  # type: ignore[type-arg]
        await settle(pilot)
        await pilot.press("8")
        await settle(pilot)
        # (the dialog's worker waits for its answer: no settle while it is open)
        await pilot.press("a", *"nightly", "tab", *"reports", "tab", *"61 * * * *", "enter")
        for _ in range(100):  # until the error line is drawn (at most 5 s)
            if "invalid cron" in str(pilot.app.screen.query_one("#schedule-error").render()):
                break
            await pilot.pause(0.05)
        for box in pilot.app.screen.query(Input):  # a blinking cursor differs from run to run
            box.cursor_blink = False
        await pilot.pause()
        await pilot.pause()

    assert snap_compare(schedules_app(), terminal_size=size, run_before=bad_cron)

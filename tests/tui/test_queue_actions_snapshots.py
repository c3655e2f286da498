"""Snapshots of the new screens of the queue actions and the command bar on canned data, at
80×24 and 200×50: the peek screen, the purge and move confirmations, the ``:`` bar.

Update after an intended change with
``pytest tests/tui/test_queue_actions_snapshots.py --snapshot-update`` and look at the SVGs.
"""

from __future__ import annotations

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from queuewatch.tui.widgets.queue_table import QueueTable
from tests.tui.canned_app import canned_app

SIZES = {"80x24": (80, 24), "200x50": (200, 50)}


async def settle(pilot: Pilot) -> None:  # type: ignore[type-arg]
    """Wait for the app's work, but not for workers that wait on a dialog being answered."""
    for _ in range(3):
        await pilot.pause(0.05)
    pending = [w for w in pilot.app.workers
               if w.group not in ("command-bar", "queue-purge", "queue-move")]
    if pending:  # (an empty list would mean every worker)
        await pilot.app.workers.wait_for_complete(pending)
    await pilot.pause()


def on_queue(queue: str, *keys: str):  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot) -> None:  # type: ignore[type-arg]
        await settle(pilot)
        table = pilot.app.query_one(QueueTable)
        table.move_cursor(row=table.get_row_index(queue))
        table.focus()
        await settle(pilot)
        for key in keys:
            await pilot.press(key)
            await settle(pilot)
        for box in pilot.app.screen.query(Input):
            box.cursor_blink = False  # a blinking cursor is drawn or not, by the clock
        await settle(pilot)
    return run_before


@pytest.fixture(params=sorted(SIZES))
def size(request: pytest.FixtureRequest) -> tuple[int, int]:
    return SIZES[request.param]


def test_peek(snap_compare, size):
    assert snap_compare(canned_app(), terminal_size=size,
                        run_before=on_queue("thumbnails.dlq", "p"))


def test_purge_confirmation(snap_compare, size):
    assert snap_compare(canned_app(), terminal_size=size, run_before=on_queue("emails", "X"))


def test_move_confirmation(snap_compare, size):
    assert snap_compare(canned_app(), terminal_size=size,
                        run_before=on_queue("emails", "m", *"reports", "enter"))


def test_command_bar(snap_compare, size):
    assert snap_compare(canned_app(), terminal_size=size,
                        run_before=on_queue("emails", "colon", "q", "u"))

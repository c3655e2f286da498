"""Snapshot tests of every view on canned data (pytest-textual-snapshot), on a standard
80×24 terminal and a wide 200×50 one.

Update the stored SVGs after an intended change with
``pytest tests/tui/test_snapshots.py --snapshot-update`` and look at them before committing.
"""

from __future__ import annotations

import pytest
from textual.pilot import Pilot

from tests.tui.canned_app import canned_app

SIZES = {"80x24": (80, 24), "200x50": (200, 50)}


async def settle(pilot: Pilot) -> None:  # type: ignore[type-arg]
    # No animations: the tab underline (0.3 s) and the tab strip's scroll to the active tab
    # were caught half way on a loaded machine (the 80-column views 5-8 differed run to run)
    pilot.app.animation_level = "none"
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()  # a table shown for the first time fits its width after a refresh


def pressing(*keys: str):  # type: ignore[no-untyped-def]
    """Settle, press ``keys``, settle again (snap_compare's own ``press`` does not wait)."""
    async def run_before(pilot: Pilot) -> None:  # type: ignore[type-arg]
        await settle(pilot)
        await pilot.press(*keys)
        await settle(pilot)
    return run_before


@pytest.fixture(params=sorted(SIZES))
def size(request: pytest.FixtureRequest) -> tuple[int, int]:
    return SIZES[request.param]


@pytest.mark.parametrize("view", ["1", "2", "3", "5"])
def test_view(snap_compare, size, view):
    assert snap_compare(canned_app(), terminal_size=size, run_before=pressing(view))


def test_busy_view(snap_compare, size):
    assert snap_compare(canned_app(busy=True), terminal_size=size, run_before=pressing("6"))


def test_scheduled_view(snap_compare, size):
    assert snap_compare(canned_app(), terminal_size=size, run_before=pressing("7"))


def test_dlq_view(snap_compare, size):
    async def open_dlq(pilot: Pilot) -> None:  # type: ignore[type-arg]
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("space")
        await settle(pilot)

    assert snap_compare(canned_app(), terminal_size=size, run_before=open_dlq)


def test_queue_detail(snap_compare, size):
    async def open_thumbnails(pilot: Pilot) -> None:  # type: ignore[type-arg]
        await settle(pilot)
        await pilot.press("slash", *"thumb", "enter", "enter")
        await settle(pilot)

    assert snap_compare(canned_app(steps=3), terminal_size=size, run_before=open_thumbnails)


def test_queues_sorted_by_ready(snap_compare):
    # s cycles name -> type -> state -> ready (largest first)
    assert snap_compare(canned_app(), terminal_size=(200, 50), run_before=pressing("s", "s", "s"))


def test_help(snap_compare):
    assert snap_compare(canned_app(), terminal_size=(100, 50), run_before=pressing("question_mark"))


def test_read_only_dlq(snap_compare):
    assert snap_compare(canned_app(read_only=True), terminal_size=(200, 50),
                        run_before=pressing("4"))

"""Snapshot tests of the main views on canned data (pytest-textual-snapshot).

Update the stored SVGs after an intended change with ``pytest tests/tui --snapshot-update``
and look at them before committing.
"""

from __future__ import annotations

from textual.pilot import Pilot

from tests.tui.canned_app import canned_app

SIZE = (150, 36)


async def settle(pilot: Pilot) -> None:  # type: ignore[type-arg]
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def test_queues_view(snap_compare):
    assert snap_compare(canned_app(), terminal_size=SIZE, run_before=settle)


def test_queues_sorted_by_ready(snap_compare):
    # s cycles name -> type -> state -> ready (largest first)
    assert snap_compare(canned_app(), press=["s", "s", "s"], terminal_size=SIZE, run_before=settle)


def test_queue_detail(snap_compare):
    async def open_thumbnails(pilot: Pilot) -> None:  # type: ignore[type-arg]
        await settle(pilot)
        await pilot.press("slash", *"thumb", "enter", "enter")
        await settle(pilot)

    assert snap_compare(canned_app(steps=3), terminal_size=SIZE, run_before=open_thumbnails)


def test_workers_view(snap_compare):
    assert snap_compare(canned_app(), press=["2"], terminal_size=SIZE, run_before=settle)


def test_stuck_view(snap_compare):
    assert snap_compare(canned_app(), press=["3"], terminal_size=SIZE, run_before=settle)


def test_dlq_view(snap_compare):
    async def open_dlq(pilot: Pilot) -> None:  # type: ignore[type-arg]
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("space")
        await settle(pilot)

    assert snap_compare(canned_app(), terminal_size=SIZE, run_before=open_dlq)


def test_alerts_view(snap_compare):
    assert snap_compare(canned_app(), press=["5"], terminal_size=SIZE, run_before=settle)


def test_help(snap_compare):
    assert snap_compare(canned_app(), press=["question_mark"], terminal_size=(100, 50),
                        run_before=settle)


def test_read_only_dlq(snap_compare):
    assert snap_compare(canned_app(read_only=True), press=["4"], terminal_size=SIZE,
                        run_before=settle)

"""At 80 columns the footer shows each view's keys in full (compact), Help, Quit and the
command bar first; the DLQ view, with more keys than fit, shows its replay workflow."""

from __future__ import annotations

import pytest
from textual.widgets import Tab
from textual.widgets._footer import FooterKey

from tests.tui.canned_app import canned_app
from tests.tui.test_snapshots import settle

PINNED = ["help", "quit", "command_bar"]
#: The DLQ view's keys that must fit at 80 columns (the rest are under ? and :).
DLQ_FIRST = ["filter", "replay_selected", "replay_filtered", "mark", "delete_selected"]


def _keys(app) -> list[FooterKey]:  # type: ignore[no-untyped-def]
    return [k for k in app.screen.query(FooterKey) if k.display]


@pytest.mark.parametrize("view", ["1", "2", "3", "4", "5", "6", "7", "8"])
async def test_every_view_fits_its_keys_in_80_columns(view: str) -> None:
    app = canned_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press(view)
        await settle(pilot)
        keys = _keys(app)
        actions = [k.action for k in keys]
        assert actions[:3] == PINNED
        must_fit = PINNED + DLQ_FIRST if view == "4" else actions
        cut = [(k.action, k.region.right) for k in keys
               if k.action in must_fit and (k.region.right > 80 or k.region.width == 0)]
        assert cut == [], f"view {view}: {actions}"
        assert "command_palette" not in actions  # (^p still works; ":" is listed)


async def test_the_queue_detail_fits_its_keys_and_a_wide_terminal_shows_the_palette() -> None:
    app = canned_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        keys = _keys(app)
        assert "pause_queue" in [k.action for k in keys]
        assert [k.action for k in keys if k.region.right > 80] == []
        await pilot.resize_terminal(200, 50)
        await settle(pilot)
        assert "command_palette" in [k.action for k in _keys(app)]


@pytest.mark.parametrize("width", [80, 87, 88, 120])
async def test_every_tab_title_shows_in_full(width: int) -> None:
    # Given the console at ``width`` columns (80: the tabs lose their left padding)
    app = canned_app()
    async with app.run_test(size=(width, 24)) as pilot:
        await settle(pilot)
        # Then each of the eight tab titles lies wholly on screen, in key order
        tabs = list(app.screen.query(Tab))
        assert [str(t.label)[0] for t in tabs] == list("12345678")
        cut = [(str(t.label), t.region.right) for t in tabs
               if t.region.width < len(str(t.label)) or t.region.right > width]
        assert cut == [], f"at {width} columns"
        # And a resize to a wide terminal gives the padding back (and a narrow one takes it)
        await pilot.resize_terminal(200, 50)
        await settle(pilot)
        assert all(t.region.width == len(str(t.label)) + 2 for t in tabs)
        await pilot.resize_terminal(80, 24)
        await settle(pilot)
        assert max(t.region.right for t in tabs) <= 80

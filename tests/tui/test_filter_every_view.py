"""``/`` filters every view of the main screen and Esc clears it (views 1-8 and any added
later: the test walks the main screen's view list), on canned snapshots."""

from __future__ import annotations

from textual.widgets import Input, TabbedContent

from queuewatch.tui.screens.main import VIEWS
from tests.tui.canned_app import canned_app


async def settle(pilot) -> None:  # type: ignore[no-untyped-def]
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def rows(view) -> int:  # type: ignore[no-untyped-def]
    from queuewatch.tui.widgets.keyed_table import KeyedTable

    tables = [t for t in view.query(KeyedTable) if t.display]
    return sum(t.row_count for t in tables)


async def test_slash_filters_every_view_and_esc_clears_it():
    app = canned_app()
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        assert len(VIEWS) >= 8
        for i, (view_id, _title) in enumerate(VIEWS, 1):
            # Given view i shown
            await pilot.press(str(i))
            await settle(pilot)
            assert app.query_one(TabbedContent).active == view_id
            view = app.main.view_widget(view_id)
            shown = rows(view)
            # When / is pressed and text typed that matches no row
            await pilot.press("slash")
            await settle(pilot)
            box = app.focused
            assert isinstance(box, Input) and box.display, f"view {i}: / gave no filter box"
            assert view in box.ancestors, f"view {i}: / opened another view's filter"
            await pilot.press(*"zzzqqq", "enter")
            await settle(pilot)
            if view_id != "dlq":  # the DLQ browser filters by reading again (no canned match)
                assert rows(view) == 0, f"view {i}: the filter hid nothing"
            # When Esc is pressed in the box (and again from the table), Then it is cleared
            box.focus()
            await pilot.press("escape")
            await settle(pilot)
            assert box.value == "" and not box.display, f"view {i}: Esc did not clear it"
            assert rows(view) == shown, f"view {i}: rows not back after Esc"
            # And the number keys switch views again (they do not type into the filter)
            assert not isinstance(app.focused, Input), f"view {i}: focus stayed in the box"

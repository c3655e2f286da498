"""A HUNG worker or a critical cell keeps its colour under the cursor (issue 14, feature 6):
Textual's cursor style wins over a cell's foreground unless the table says otherwise."""

from __future__ import annotations

from rich.segment import Segment
from textual.widgets import DataTable

from tests.tui.canned_app import canned_app


def _cursor_line(table: DataTable) -> list[Segment]:  # type: ignore[type-arg]
    """The rendered segments of the row under the cursor (line 0 is the header)."""
    return list(table.render_line(1 + table.cursor_row))


def _style_of(segments: list[Segment], text: str):  # type: ignore[no-untyped-def]
    found = [s for s in segments if text in s.text]
    assert found, f"{text!r} not on the cursor row: {''.join(s.text for s in segments)!r}"
    return found[0].style


async def test_problem_cells_keep_their_colour_under_the_cursor():
    app = canned_app()
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        # Given the Workers view, whose first row (under the cursor) is the hung worker
        await pilot.press("2")
        await pilot.pause()
        table = app.main.query_one("#workers-table", DataTable)
        assert table.cursor_row == 0 and table.has_focus
        # Then its State cell is still white on red
        hung = _style_of(_cursor_line(table), "HUNG")
        assert hung.bgcolor is not None and hung.bgcolor.name == "red"
        # And the stuck job's age (red) under the cursor in view 3 stays red
        await pilot.press("3")
        await pilot.pause()
        stuck = app.main.query_one("#stuck-table", DataTable)
        assert stuck.cursor_row == 0
        age = _style_of(_cursor_line(stuck), "10m45s")
        assert age.color is not None and age.color.name == "red"
        # And the first alert (critical, under the cursor) says so in red
        await pilot.press("5")
        await pilot.pause()
        alerts = app.main.query_one("#alerts-table", DataTable)
        severity = _style_of(_cursor_line(alerts), "critical")
        assert severity.color is not None and severity.color.name == "red"
        # And in the queue table a critical queue's name is red under the cursor too
        await pilot.press("1")
        await pilot.pause()
        queues = app.main.query_one("#queue-table", DataTable)
        await pilot.press("slash", *"reports", "enter")
        await pilot.pause()
        name = _style_of(_cursor_line(queues), "reports")
        assert name.color is not None and name.color.name == "red"


async def test_a_queue_row_colours_the_cell_an_alert_is_about():
    app = canned_app()
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        # Given thumbnails: oldest message critical (6m52s > 5m), fill a warning (84%)
        queues = app.main.query_one("#queue-table", DataTable)
        await pilot.press("slash", *"thumbnails", "enter")
        await pilot.pause()
        row = _cursor_line(queues)
        # Then, on the highlighted row, the Oldest cell is red and the Fill cell yellow,
        # where the problems are; the ready count (no alert about it) keeps the cursor's colour
        oldest, fill = _style_of(row, "6m52s"), _style_of(row, "84%")
        assert oldest.color is not None and oldest.color.name == "red"
        assert fill.color is not None and fill.color.name == "yellow"
        ready = _style_of(row, "4210")
        assert ready.color is None or ready.color.name not in ("red", "yellow")

"""A refresh formats again only the rows on screen whose queue changed (issue 16 item 7:
the console at 50,000 queues must not redo per-row work it can skip)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from queuewatch.monitor.model import Snapshot
from queuewatch.tui.canned import many_queues
from queuewatch.tui.format import QUEUE_COLUMN_KEYS
from queuewatch.tui.widgets.queue_table import QueueTable
from tests.tui.canned_app import counting_app


def _with_ready(snap: Snapshot, name: str, ready: int) -> Snapshot:
    queues = tuple(replace(q, ready=ready) if q.name == name else q for q in snap.queues)
    return replace(snap, queues=queues, taken_at=snap.taken_at + 5)


async def test_a_refresh_formats_only_the_rows_on_screen_that_changed() -> None:
    snap = many_queues(300, 0)
    app, _ = counting_app([snap], clock=lambda: snap.taken_at + 5)
    async with app.run_test(size=(200, 50)) as pilot:
        while app.polls_done < 1:
            await pilot.pause(0.05)
        await pilot.pause()
        table = app.query_one(QueueTable)
        formatted: list[tuple[str, int]] = []
        original = table.cell_text

        def counting(name: str, index: int):  # type: ignore[no-untyped-def]
            formatted.append((name, index))
            return original(name, index)

        table.cell_text = counting  # type: ignore[method-assign]
        columns = len(table.visible_columns)
        on_screen = table.shown_names[:10]

        # Given the same numbers again (a new snapshot, equal values)
        app.apply_snapshot(replace(snap, taken_at=snap.taken_at + 5))
        await pilot.pause()
        # Then no cell is formatted again
        assert formatted == []

        # When one queue on screen changed
        target = on_screen[3]
        app.apply_snapshot(_with_ready(snap, target, 987_654))
        await pilot.pause()
        # Then only its row is formatted again, and it shows the new number
        assert {name for name, _ in formatted} == {target}
        assert len(formatted) == columns
        ready = QUEUE_COLUMN_KEYS.index("ready")
        assert str(original(target, ready)).strip() == "988k"

        # When every queue changed, every row on screen is formatted again
        formatted.clear()
        app.apply_snapshot(many_queues(300, 1))
        await pilot.pause()
        assert len({name for name, _ in formatted}) >= 10


async def test_a_big_first_load_fills_in_chunks_and_keys_are_answered_meanwhile() -> None:
    from textual.widgets import Input

    from queuewatch.tui.widgets.queue_table import ADD_CHUNK

    small = many_queues(10, 0)
    app, _ = counting_app([small], clock=lambda: small.taken_at + 5)
    async with app.run_test(size=(200, 50)) as pilot:
        while app.polls_done < 1:
            await pilot.pause(0.05)
        await pilot.pause()
        table = app.query_one(QueueTable)
        # Given a poll that brings 5 chunks' worth of queues at once
        big = replace(many_queues(5 * ADD_CHUNK, 1), taken_at=small.taken_at + 5)
        app.apply_snapshot(big)
        # Then only the first chunk is added in that turn, and the help line says so
        assert table.row_count == len(small.queues) + ADD_CHUNK and table.rows_to_add > 0
        assert f"adding {table.rows_to_add:,} more" in table.summary()
        # And a key pressed meanwhile is answered before the table is full (posted as a
        # terminal would; Pilot.press would first wait for the loop to be idle)
        app.simulate_key("slash")
        for _ in range(1000):
            if isinstance(app.focused, Input):
                break
            await asyncio.sleep(0)
        assert isinstance(app.focused, Input)
        assert table.rows_to_add > 0, "the table filled before the key was handled"
        await pilot.press("escape")
        # And then every row comes, once, in name order
        while table.rows_to_add:
            await pilot.pause(0.01)
        await pilot.pause()
        names = [q.name for q in big.queues]
        assert table.row_count == len(names) and table.shown_names == sorted(names)
        assert "adding" not in table.summary()

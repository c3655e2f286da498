"""Export of a dead-letter cause group from the DLQ browser (``b``, then ``e``), on the real
broker: the file holds exactly the group's messages, in the DLQ export format."""

from __future__ import annotations

import json

from queuewatch.topology import QueueSpec
from queuewatch.tui.screens.dialogs import ConfirmScreen
from queuewatch.tui.widgets.dlq_causes import CauseTable
from queuewatch.tui.widgets.dlq_view import DlqView
from tests.helpers import declare, depth
from tests.tui.live_helpers import CAUSES, live_app, park_causes, wait_for

SIZE = (160, 40)


async def test_e_in_the_cause_grouping_exports_the_highlighted_cause(
        settings, connection, mgmt, vhost, tmp_path, monkeypatch):
    # Given five dead letters of two causes
    monkeypatch.chdir(tmp_path)
    await declare(connection, vhost, QueueSpec("orders"), mgmt=mgmt)
    await park_causes(connection, "orders", CAUSES)
    app = live_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        dlq = app.query_one(DlqView)
        await wait_for(pilot, lambda: len(dlq.letters) == 5, what="5 dead letters read")
        # When grouped by cause and the KeyError cause highlighted
        await pilot.press("b")
        causes = dlq.query_one(CauseTable)
        await wait_for(pilot, lambda: causes.row_count == 2, what="2 causes")
        causes.move_cursor(row=causes.keys.index("KeyError|<str>"))
        # And e pressed, Then the confirmation names the cause, the count and the file
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="dialog")
        path = tmp_path / "orders.dlq-KeyError-_str-export.jsonl"
        assert app.screen.title_text == f"Export 2 dead letters of this cause to {path.name}?"
        assert "KeyError: <str>" in app.screen.detail and str(path) in app.screen.detail
        await pilot.press("y")
        # Then the file holds that group's two messages, and the result says where
        await wait_for(pilot, lambda: any(str(n.message).startswith(
            "exported 2 dead letters of orders.dlq (cause 'KeyError: <str>')")
            for n in app._notifications), what="the result")
        assert str(path) in next(str(n.message) for n in app._notifications
                                 if str(n.message).startswith("exported"))
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [json.loads(r["body_text"])["job"] for r in records] == ["j2", "j4"]
    assert all(r["headers"] for r in records)  # the DLQ export format, headers and all
    assert await depth(connection, "orders.dlq") == 5

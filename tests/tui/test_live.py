"""Pilot tests of the console on the real broker (each test in its own vhost)."""

from __future__ import annotations

import socket
from dataclasses import replace

import aio_pika
from textual.widgets import TabbedContent

from queuewatch.topology import QueueSpec
from queuewatch.tui.commands import palette_commands
from queuewatch.tui.live import LiveSource
from queuewatch.tui.screens.dialogs import ConfirmScreen
from queuewatch.tui.screens.queue_detail import QueueDetailScreen
from queuewatch.tui.widgets.dlq_view import DlqView
from queuewatch.tui.widgets.keyed_table import KeyedTable
from queuewatch.tui.widgets.queue_table import QueueTable
from queuewatch.tui.widgets.status import ErrorLine, StatusBar
from tests.helpers import declare, depth, wait_until
from tests.tui.live_helpers import live_app, park_dead_letters, wait_for

SIZE = (160, 40)


async def publish(connection, queue: str, n: int) -> None:  # type: ignore[no-untyped-def]
    channel = await connection.channel(publisher_confirms=True)
    for i in range(n):
        await channel.default_exchange.publish(
            aio_pika.Message(body=b"x", message_id=f"{queue}-{i}"), routing_key=queue
        )
    await channel.close()


async def test_navigate_views_and_open_a_queue(settings, connection, mgmt, vhost):
    # Given two job queues on the broker
    await declare(connection, vhost, QueueSpec("alpha"), QueueSpec("beta", max_length=100), mgmt=mgmt)
    app = live_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(QueueTable)
        await wait_for(pilot, lambda: {"alpha", "beta"} <= set(table.shown_names), what="queues")
        # When the number keys are pressed, Then each view becomes active
        for key, view in (("2", "workers"), ("3", "stuck"), ("4", "dlq"), ("5", "alerts"),
                          ("1", "queues")):
            await pilot.press(key)
            assert app.query_one(TabbedContent).active == view
        # And Enter on a queue opens its detail with its limits, Esc goes back
        table.move_cursor(row=table.get_row_index("beta"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, QueueDetailScreen), what="detail")
        limits = str(app.screen.query_one("#detail-limits").render())
        assert "100" in limits and "reject-publish" in limits
        await wait_for(pilot, lambda: "Consumers (0)" in str(
            app.screen.query_one("#detail-consumers").render()), what="consumers listed")
        await pilot.press("escape")
        assert not isinstance(app.screen, QueueDetailScreen)
        # And the status line names the broker without a password
        status = str(app.query_one(StatusBar).render_text())
        assert "connected" in status and "guest:guest" not in status


async def test_filter_and_sort(settings, connection, mgmt, vhost):
    # Given three queues, 'gamma' the deepest
    await declare(connection, vhost, QueueSpec("alpha"), QueueSpec("alps"), QueueSpec("gamma"),
                  mgmt=mgmt)
    await publish(connection, "gamma", 7)
    await publish(connection, "alps", 2)
    app = live_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(QueueTable)
        await wait_for(pilot, lambda: (q := table.stats("gamma")) is not None and q.ready == 7,
                       what="gamma's 7 messages in the stats")
        # When filtering by 'alp'
        await pilot.press("slash", *"alp")
        await wait_for(pilot, lambda: set(table.shown_names) == {"alpha", "alps", "alpha.dlq",
                                                                  "alps.dlq"}, what="filter")
        # Then Esc clears the filter and every queue is back
        await pilot.press("escape")
        await wait_for(pilot, lambda: "gamma" in table.shown_names, what="filter cleared")
        # When sorting by ready (s: name -> type -> state -> ready), deepest first
        await pilot.press("s", "s", "s")
        assert table.sort_column == "ready" and table.sort_reverse
        assert table.shown_names[:2] == ["gamma", "alps"]
        # And S reverses it
        await pilot.press("S")
        assert table.shown_names[-2:] == ["alps", "gamma"]


async def test_open_dlq_message_and_replay_selection(settings, connection, mgmt, vhost):
    # Given three dead letters of 'orders'
    await declare(connection, vhost, QueueSpec("orders"), mgmt=mgmt)
    await park_dead_letters(connection, "orders", ["job-a", "job-b", "job-c"])
    app = live_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        dlq = app.query_one(DlqView)
        table = dlq.query_one(KeyedTable)
        await wait_for(pilot, lambda: table.row_count == 3, what="3 dead letters listed")
        assert dlq.dlq == "orders.dlq"
        # When a message is highlighted, Then its detail shows error, traceback and body
        table.focus()
        detail = str(dlq.query_one("#dlq-detail").render())
        assert "job-a" in detail and "ValueError: bad input 0" in detail and "Traceback" in detail
        # And looking lost nothing
        assert await depth(connection, "orders.dlq") == 3
        # When job-a and job-b are marked and replayed
        await pilot.press("space", "space")
        assert dlq.marked == {"job-a", "job-b"}
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        # Then the confirmation shows the dry-run count
        assert "Replay 2 dead letters" in app.screen.title_text
        await pilot.press("y")
        # And the broker has them back in 'orders', job-c still parked
        await wait_until(lambda: depth(connection, "orders"), what="replayed messages")
        await wait_until(lambda: _eq(depth(connection, "orders.dlq"), 1), what="dlq down to 1")
        assert await depth(connection, "orders") == 2
        await wait_for(pilot, lambda: set(dlq.letters) == {"job-c"}, what="list reloaded")


async def _eq(awaitable, value) -> bool:  # type: ignore[no-untyped-def]
    return await awaitable == value


async def test_confirmation_cancel_changes_nothing(settings, connection, mgmt, vhost):
    await declare(connection, vhost, QueueSpec("orders"), mgmt=mgmt)
    await park_dead_letters(connection, "orders", ["job-a"])
    app = live_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        dlq = app.query_one(DlqView)
        await wait_for(pilot, lambda: dlq.query_one(KeyedTable).row_count == 1, what="listed")
        dlq.query_one(KeyedTable).focus()
        # When replay is asked for and the dialog answered 'n'
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        await pilot.press("n")
        await pilot.pause(0.5)
        # Then nothing moved
        assert not isinstance(app.screen, ConfirmScreen)
        assert await depth(connection, "orders.dlq") == 1
        assert await depth(connection, "orders") == 0


async def test_read_only_refuses_replay_and_says_so(settings, connection, mgmt, vhost):
    await declare(connection, vhost, QueueSpec("orders"), mgmt=mgmt)
    await park_dead_letters(connection, "orders", ["job-a"])
    ro = replace(settings, read_only=True)
    app = live_app(ro)
    async with app.run_test(size=SIZE) as pilot:
        assert "READ-ONLY" in str(app.query_one(StatusBar).render_text())
        await pilot.press("4")
        dlq = app.query_one(DlqView)
        await wait_for(pilot, lambda: dlq.query_one(KeyedTable).row_count == 1, what="listed")
        dlq.query_one(KeyedTable).focus()
        assert "read-only" in str(dlq.query_one("#dlq-help").render())
        # When replay and delete keys are pressed
        await pilot.press("space", "r", "d", "R")
        await pilot.pause(0.5)
        # Then no confirmation opens and the dead letter stays
        assert not isinstance(app.screen, ConfirmScreen)
        assert dlq.check_action("replay_selected", ()) is None
        assert await depth(connection, "orders.dlq") == 1
        # And the command palette offers no destructive action
        titles = [c.title for c in palette_commands(app)]
        assert "View: DLQ browser" in titles
        assert not [t for t in titles if "replay" in t or "delete" in t or "cancel" in t]
        # And the core refuses too, even if called directly
        dlq.action_replay_selected()
        await pilot.pause(0.3)
        assert await depth(connection, "orders.dlq") == 1


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_broker_down_then_recovery(settings, connection, mgmt, vhost):
    # Given the console pointed at a management URL where nothing listens
    await declare(connection, vhost, QueueSpec("alpha"), mgmt=mgmt)
    down = replace(settings, management_url=f"http://127.0.0.1:{closed_port()}")
    source = LiveSource(down)
    app = live_app(down, source)
    async with app.run_test(size=SIZE) as pilot:
        # Then the UI stays up, shows the error and a retry countdown
        await wait_for(pilot, lambda: app.error is not None, what="the poll error")
        assert app.query_one(ErrorLine).has_class("visible")
        assert "cannot reach the management API" in str(app.query_one(ErrorLine).render())
        status = str(app.query_one(StatusBar).render_text())
        assert "disconnected" in status and "retry in" in status
        await wait_for(pilot, lambda: app.failures >= 2, what="a second, retried poll")
        # When the management API is reachable again
        source.set_settings(settings)
        # Then the console recovers by itself
        await wait_for(pilot, lambda: app.error is None and "alpha" in
                       app.query_one(QueueTable).shown_names, what="recovery")
        assert not app.query_one(ErrorLine).has_class("visible")
        assert "connected" in str(app.query_one(StatusBar).render_text())

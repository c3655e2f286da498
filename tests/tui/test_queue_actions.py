"""Pilot tests of the actions on any queue (Queues view and queue detail) on the real broker:
peek, purge, move, pause/resume, a test job; read-only refusals; the audit log."""

from __future__ import annotations

import json
from dataclasses import replace

import aio_pika
from textual.widgets import ProgressBar

from queuewatch.audit import AuditLog
from queuewatch.topology import QueueSpec
from queuewatch.tui.screens.dialogs import ConfirmScreen, PickScreen
from queuewatch.tui.screens.peek import PeekScreen
from queuewatch.tui.screens.queue_detail import QueueDetailScreen
from queuewatch.tui.widgets.keyed_table import KeyedTable
from queuewatch.tui.widgets.queue_table import QueueTable
from tests.helpers import declare, depth, drain, wait_until
from tests.tui.live_helpers import live_app, no_consumers, wait_for

SIZE = (160, 40)


async def publish(connection, queue: str, n: int) -> None:  # type: ignore[no-untyped-def]
    channel = await connection.channel(publisher_confirms=True)
    for i in range(n):
        await channel.default_exchange.publish(
            aio_pika.Message(body=json.dumps({"n": i}).encode(), message_id=f"{queue}-{i}",
                             content_type="application/json"), routing_key=queue)
    await channel.close()


async def _depth_is(connection, queue: str, n: int) -> bool:  # type: ignore[no-untyped-def]
    return await depth(connection, queue) == n


def audit(settings) -> list[dict]:  # type: ignore[no-untyped-def]
    return AuditLog.from_settings(settings).read()


async def select(pilot, app, name: str) -> None:  # type: ignore[no-untyped-def]
    table = app.query_one(QueueTable)
    await wait_for(pilot, lambda: name in table.shown_names, what=f"{name} listed")
    table.move_cursor(row=table.get_row_index(name))
    table.focus()


def notes(app) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(n.message) for n in app._notifications]


async def test_peek_shows_messages_leaves_depth_and_marks_them_redelivered(
        settings, connection, mgmt, vhost):
    # Given a queue with three messages and no consumer
    await declare(connection, vhost, QueueSpec("alpha"), mgmt=mgmt)
    await publish(connection, "alpha", 3)
    app = live_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, app, "alpha")
        # When p is pressed
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, PeekScreen), what="peek screen")
        # Then the three messages are shown, in order, and none was redelivered before
        table = app.screen.query_one(KeyedTable)
        await wait_for(pilot, lambda: table.row_count == 3, what="3 rows")
        assert [dl.job_id for dl in app.screen.letters.values()] == ["alpha-0", "alpha-1", "alpha-2"]
        assert not any(dl.redelivered for dl in app.screen.letters.values())
        assert "marked redelivered" in str(app.screen.query_one("#peek-title").render())
        # And the queue still holds all three
        assert await depth(connection, "alpha") == 3
        # When peeked again, the first read shows: every message is now redelivered
        await pilot.press("escape")
        await wait_until(lambda: no_consumers(connection, "alpha"), what="the read's consumer gone")
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, PeekScreen), what="peek again")
        assert all(dl.redelivered for dl in app.screen.letters.values())
        assert await depth(connection, "alpha") == 3


async def test_peek_refuses_a_queue_with_consumers_unless_asked(settings, connection, mgmt, vhost):
    # Given a queue with a message and a consumer that holds nothing (prefetch 1, busy)
    await declare(connection, vhost, QueueSpec("busy"), mgmt=mgmt)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=1)
    queue = await channel.declare_queue("busy", passive=True)
    async def hold(_message: aio_pika.abc.AbstractIncomingMessage) -> None:
        """Takes one and never acks it."""

    await queue.consume(hold, no_ack=False)
    await publish(connection, "busy", 2)
    app = live_app(settings)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await select(pilot, app, "busy")
            # When p is pressed, Then the console asks first, naming the consumer
            await pilot.press("p")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="question")
            assert "1 consumer" in app.screen.title_text
            # And n leaves it unread; y reads what the consumer does not hold
            await pilot.press("n")
            await pilot.pause(0.3)
            assert not isinstance(app.screen, PeekScreen)
            await pilot.press("p")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="again")
            await pilot.press("y")
            await wait_for(pilot, lambda: isinstance(app.screen, PeekScreen), what="forced peek")
            await wait_for(pilot, lambda: app.screen.query_one(KeyedTable).row_count == 1,
                           what="the message the consumer does not hold")
            assert "consumers" in str(app.screen.query_one("#peek-title").render())
    finally:
        await channel.close()


async def test_purge_says_the_count_and_is_audited(settings, connection, mgmt, vhost):
    await declare(connection, vhost, QueueSpec("alpha"), mgmt=mgmt)
    await publish(connection, "alpha", 4)
    app = live_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, app, "alpha")
        # When X is pressed, Then the confirmation says how many
        await pilot.press("X")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="dialog")
        assert app.screen.title_text == "Purge 4 messages from alpha?"
        # And n keeps them
        await pilot.press("n")
        await pilot.pause(0.3)
        assert await depth(connection, "alpha") == 4
        # When confirmed, the queue is empty and the audit log says so
        await pilot.press("X")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="dialog")
        await pilot.press("y")
        await wait_until(lambda: _depth_is(connection, "alpha", 0), what="purged")
        await wait_for(pilot, lambda: "purged 4 messages from alpha" in notes(app), what="result")
    entries = [e for e in audit(settings) if e["action"] == "purge"]
    assert entries and entries[-1]["count"] == 4 and entries[-1]["target"]["queue"] == "alpha"


async def test_move_lands_every_message_in_the_target(settings, connection, mgmt, vhost):
    # Given 25 messages in 'src' and an empty 'dst'
    await declare(connection, vhost, QueueSpec("src"), QueueSpec("dst"), mgmt=mgmt)
    await publish(connection, "src", 25)
    app = live_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, app, "src")
        # When m is pressed and 'dst' picked
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, PickScreen), what="target picker")
        await pilot.press(*"dst", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="dialog")
        # Then the confirmation says how many and where
        assert app.screen.title_text == "Move 25 messages from src to dst?"
        assert "queue dst" in app.screen.detail
        await pilot.press("y")
        await wait_until(lambda: _depth_is(connection, "dst", 25), what="25 in dst")
        await wait_for(pilot, lambda: any(n.startswith("moved 25 of 25 messages from src to dst")
                                          for n in notes(app)), what="the report")
        # And the progress bar counted them all, and is hidden once the move ended
        bar = app.query_one("#move-progress", ProgressBar)
        await wait_for(pilot, lambda: bar.progress == 25, what="the bar at 25")
        assert bar.total == 25 and not bar.has_class("visible")
    # And every message arrived once, none is left behind or lost
    assert await depth(connection, "src") == 0
    got = await drain(connection, "dst", 25)
    assert sorted(m.message_id for m in got) == sorted(f"src-{i}" for i in range(25))
    assert json.loads(got[0].body) == {"n": 0}
    entries = [e for e in audit(settings) if e["action"] == "move"]
    assert entries[-1]["count"] == 25 and entries[-1]["target"]["to"] == "dst"


async def test_move_to_a_missing_queue_holds_every_message_back(settings, connection, mgmt, vhost):
    # Given 'src' with 3 messages and a target that is deleted before the move
    await declare(connection, vhost, QueueSpec("src"), QueueSpec("gone"), mgmt=mgmt)
    await publish(connection, "src", 3)
    app = live_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, app, "src")
        await wait_for(pilot, lambda: "gone" in app.query_one(QueueTable).shown_names, what="gone")
        await mgmt.delete_queue(vhost, "gone")
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, PickScreen), what="picker")
        await pilot.press(*"gone", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="dialog")
        await pilot.press("y")
        # Then the report says nothing moved and why; the messages stay in 'src'
        await wait_for(pilot, lambda: any("held back in src: 3 unroutable" in n
                                          for n in notes(app)), what="the report")
    assert await depth(connection, "src") == 3


async def test_pause_resume_and_test_job_from_the_queue_detail(settings, connection, mgmt, vhost):
    await declare(connection, vhost, QueueSpec("alpha"), mgmt=mgmt)
    app = live_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, app, "alpha")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, QueueDetailScreen), what="detail")
        # When P is pressed in the detail, Then the queue-state stream says paused
        await pilot.press("P")
        await wait_for(pilot, lambda: app.snapshot is not None and app.snapshot.queue("alpha")
                       is not None and app.snapshot.queue("alpha").paused, what="paused")
        # And P again resumes it
        await pilot.press("P")
        await wait_for(pilot, lambda: not app.snapshot.queue("alpha").paused, what="resumed")
        # When t is pressed, a test job is published through the producer
        await pilot.press("t")
        await wait_for(pilot, lambda: any(n.startswith("published test job") for n in notes(app)),
                       what="published")
        note = next(n for n in notes(app) if n.startswith("published test job"))
    got = await drain(connection, "alpha", 1)
    assert len(got) == 1 and got[0].message_id and got[0].message_id in note
    assert json.loads(got[0].body)["queuewatch_test"] is True
    actions = [e["action"] for e in audit(settings)]
    assert actions == ["queue_pause", "queue_resume", "publish_test"]


async def test_read_only_refuses_each_queue_action_in_one_line(settings, connection, mgmt, vhost):
    await declare(connection, vhost, QueueSpec("alpha"), QueueSpec("beta"), mgmt=mgmt)
    await publish(connection, "alpha", 2)
    ro = replace(settings, read_only=True)
    app = live_app(ro)
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, app, "alpha")
        # When purge, move, pause and test job are pressed
        for key, action in (("X", "purge"), ("m", "move"), ("P", "pause"), ("t", "publish_test")):
            await pilot.press(key)
            # Then each is refused with one line naming it, and no dialog opens
            await wait_for(pilot, lambda a=action: any(f"refused: '{a}'" in n and "read-only" in n
                                                        for n in notes(app)), what=action)
            assert not isinstance(app.screen, ConfirmScreen | PickScreen)
        # And peek, which only reads, still works
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, PeekScreen), what="peek")
    assert await depth(connection, "alpha") == 2 and await depth(connection, "beta") == 0
    assert audit(ro) == []


async def test_a_failed_queue_action_says_why():
    # Given the console on canned snapshots, which refuse every change
    from tests.tui.canned_app import canned_app

    app = canned_app()
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, app, "emails")
        # When a purge is confirmed and the core raises
        await pilot.press("X")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="dialog")
        await pilot.press("y")
        # Then a toast names the action and the error (it does not fail silently)
        await wait_for(pilot, lambda: any("canned snapshots have no broker" in n
                                          for n in notes(app)), what="the error")
        failed = [n for n in app._notifications if "canned" in str(n.message)]
        assert failed[-1].title == "queue-purge failed" and failed[-1].severity == "error"

"""Pilot tests of the console on the real broker (each test in its own vhost)."""

from __future__ import annotations

import asyncio
import socket
import sys
from dataclasses import replace

import aio_pika
import psutil
import pytest
from textual.widgets import Input, TabbedContent

from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec
from queuewatch.tui.commands import palette_commands
from queuewatch.tui.live import LiveSource
from queuewatch.tui.screens.dialogs import ConfirmScreen, PickScreen
from queuewatch.tui.screens.queue_detail import QueueDetailScreen
from queuewatch.tui.widgets.dlq_view import DlqView
from queuewatch.tui.widgets.keyed_table import KeyedTable
from queuewatch.tui.widgets.queue_table import QueueTable
from queuewatch.tui.widgets.status import ErrorLine, StatusBar
from queuewatch.tui.widgets.views import StuckView, WorkersView
from tests.helpers import declare, depth, stuck_worker, wait_until
from tests.integration.test_operator import HUNG_APP, worker_env
from tests.tui.live_helpers import live_app, park_dead_letters, wait_for
from tests.workers import running

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
        assert any(t.startswith("View: DLQ browser") for t in titles)
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


async def test_cancel_a_stuck_job_after_confirmation(settings, connection, mgmt, vhost):
    # Given a real worker stuck on a job of a queue whose stuck threshold is 1 s
    topo = await declare(connection, vhost, QueueSpec("slow", stuck_after=1.0), mgmt=mgmt,
                         delay_levels=4)
    worker, started = stuck_worker(settings, topo, "slow", "w-slow")
    app = live_app(settings, LiveSource(settings, topology=topo))
    async with running(worker), AsyncProducer(settings, topo) as producer:
        await producer.publish("slow", {"n": 1}, job_id="stuck-1")
        await asyncio.wait_for(started.wait(), 10)
        async with app.run_test(size=SIZE) as pilot:
            # When the Stuck jobs view lists it
            await pilot.press("3")
            stuck = app.query_one(StuckView)
            table = stuck.query_one(KeyedTable)
            await wait_for(pilot, lambda: table.keys == ["stuck-1"], what="the stuck job listed")
            table.focus()
            # And the operator presses c, sees the confirmation and says yes
            await pilot.press("c")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="dialog")
            assert "stuck-1" in app.screen.title_text
            await pilot.press("y")
            # Then the worker parks the job in the DLQ as cancelled by the operator
            await wait_until(lambda: _eq(depth(connection, "slow.dlq"), 1), timeout=15,
                             what="the cancelled job in the DLQ")


@pytest.mark.slow
async def test_terminate_a_hung_local_worker_after_confirmation(settings, connection, mgmt,
                                                                vhost, tmp_path):
    # Given a worker process whose event loop hangs on its first job (heartbeats stop)
    await declare(connection, vhost, QueueSpec("jobs"), mgmt=mgmt, delay_levels=4)
    hung_app = tmp_path / "hung_app.py"
    hung_app.write_text(HUNG_APP)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "queuewatch.cli.main", "worker", f"{hung_app}:make",
        "--processes", "1", env=worker_env(settings), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    quick = replace(settings, thresholds=replace(settings.thresholds, heartbeat_stale_seconds=2.0))
    app = live_app(quick)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("2")
            workers = app.query_one(WorkersView)
            table = workers.query_one(KeyedTable)
            await wait_for(pilot, lambda: "hung-1" in table.keys, what="the worker listed")
            await publish(connection, "jobs", 1)
            # When the console flags it hung and the operator confirms the termination
            await wait_for(pilot, lambda: (w := workers.worker_stats.get("hung-1")) is not None
                           and w.hung, timeout=30, what="the worker flagged hung")
            table.focus()
            table.move_cursor(row=table.keys.index("hung-1"))
            await pilot.press("t")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="dialog")
            assert "hung-1" in app.screen.title_text
            await pilot.press("y")
            # Then the process is gone (SIGTERM, then SIGKILL after the grace period)
            await asyncio.wait_for(proc.wait(), 30)
            assert not psutil.pid_exists(proc.pid)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_replay_filtered_delete_marked_and_export(settings, connection, mgmt, vhost,
                                                        tmp_path, monkeypatch):
    # Given four dead letters of 'orders'
    monkeypatch.chdir(tmp_path)
    await declare(connection, vhost, QueueSpec("orders"), mgmt=mgmt)
    await park_dead_letters(connection, "orders", ["job-a", "job-b", "job-c", "job-d"])
    app = live_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        dlq = app.query_one(DlqView)
        table = dlq.query_one(KeyedTable)
        await wait_for(pilot, lambda: table.row_count == 4, what="4 dead letters listed")
        # When the list is filtered to one error message and 'replay filtered' confirmed
        await pilot.press("slash", *"bad input 2", "enter")
        await wait_for(pilot, lambda: set(dlq.letters) == {"job-c"}, what="filtered list")
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="dialog")
        assert "Replay 1 dead letter from" in app.screen.title_text
        await pilot.press("y")
        # Then only that one went back to 'orders'
        await wait_until(lambda: _eq(depth(connection, "orders"), 1), what="1 replayed")
        assert await depth(connection, "orders.dlq") == 3
        # When the filter is cleared, job-a is marked and deleted after confirmation
        dlq.query_one("#dlq-filter", Input).value = ""
        await pilot.press("slash", "enter")
        await wait_for(pilot, lambda: set(dlq.letters) == {"job-a", "job-b", "job-d"},
                       what="unfiltered list")
        table.move_cursor(row=table.keys.index("job-a"))
        await pilot.press("space", "d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="dialog")
        assert "Delete 1 dead letter from" in app.screen.title_text
        await pilot.press("y")
        await wait_until(lambda: _eq(depth(connection, "orders.dlq"), 2), what="1 deleted")
        try:
            await wait_for(pilot, lambda: set(dlq.letters) == {"job-b", "job-d"}, what="reload")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; shown {sorted(dlq.letters)}, "
                                 f"dlq {await depth(connection, 'orders.dlq')}") from None
        # And export writes the remaining two to a file without removing them
        await pilot.press("e")
        export = tmp_path / "orders.dlq-export.jsonl"
        await wait_for(pilot, lambda: export.exists() and len(export.read_text().splitlines()) == 2,
                       what="the export file")
        assert await depth(connection, "orders.dlq") == 2


async def test_failed_reload_and_unroutable_replay_say_why(settings, connection, mgmt, vhost):
    # Given a dead letter whose original queue is gone (its replay is unroutable)
    await declare(connection, vhost, QueueSpec("orders"), mgmt=mgmt)
    await park_dead_letters(connection, "orders", ["job-a"])
    await mgmt.delete_queue(vhost, "orders")
    app = live_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        dlq = app.query_one(DlqView)
        await wait_for(pilot, lambda: dlq.query_one(KeyedTable).row_count == 1, timeout=40,
                       what="listed")
        dlq.query_one(KeyedTable).focus()
        # When it is replayed
        await pilot.press("r")
        # Then the console says, before any dialog, that it would be kept, and why (its dry
        # run counts what the replay would keep: not "replayed 0 of 1" as a success)
        await wait_for(pilot, lambda: any("kept in orders.dlq" in str(n.message)
                                          for n in app._notifications), what="why it was kept")
        note = next(str(n.message) for n in app._notifications if "kept" in str(n.message))
        assert note.startswith("nothing to replay"), note
        assert "job-a" in note and ("unroutable" in note or "no-route" in note), note
        assert not isinstance(app.screen, ConfirmScreen)
        # When the DLQ itself is deleted and 'l' pressed, the failed read is shown too
        await mgmt.delete_queue(vhost, "orders.dlq")
        await pilot.press("l")
        await wait_for(pilot, lambda: "last action failed" in str(
            dlq.query_one("#dlq-help").render()), what="the failed reload shown")
        assert len(app._notifications) >= 2


async def test_dlq_picker_finds_dead_letter_queues_by_their_arguments(settings, connection, vhost):
    # Given a queue 'legacy' that dead-letters to 'legacy.dead' (not a '.dlq' name), with one
    # dead letter in it
    channel = await connection.channel()
    await channel.declare_queue("legacy.dead", durable=True)
    await channel.declare_queue("legacy", durable=True, arguments={
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "legacy.dead"})
    await channel.default_exchange.publish(aio_pika.Message(body=b"{}", message_id="old-1"),
                                           routing_key="legacy.dead")
    await channel.close()
    app = live_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        # When the DLQ picker is opened and 'dead' typed
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, PickScreen), what="the picker")
        assert "legacy.dead" in app.screen.choices
        assert "arguments of legacy" in app.screen.labels["legacy.dead"]
        await pilot.press(*"dead", "enter")
        # Then the browser reads it
        dlq = app.query_one(DlqView)
        await wait_for(pilot, lambda: dlq.dlq == "legacy.dead" and "old-1" in dlq.letters,
                       what="legacy.dead browsed")

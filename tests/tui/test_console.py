"""Pilot tests of the console on canned snapshots (no broker): order, layout, words, keys,
staleness and what a failed action shows. Each names the issue-14 defect it guards."""

from __future__ import annotations

from dataclasses import replace

from textual.widgets import Input

from queuewatch.config import Settings
from queuewatch.errors import AuthenticationFailed
from queuewatch.monitor.model import Alert, StuckJob
from queuewatch.tui import make_app
from queuewatch.tui.canned import demo_dead_letters, demo_snapshot
from queuewatch.tui.format import fill_text
from queuewatch.tui.screens.dialogs import ConfirmScreen
from queuewatch.tui.screens.queue_detail import QueueDetailScreen
from queuewatch.tui.source import Replayed
from queuewatch.tui.widgets.dlq_view import DlqView
from queuewatch.tui.widgets.footer import PinnedFooter
from queuewatch.tui.widgets.keyed_table import KeyedTable
from queuewatch.tui.widgets.queue_table import QueueTable
from queuewatch.tui.widgets.status import StatusBar
from queuewatch.tui.widgets.views import AlertsView, StuckView, WorkersView
from tests.tui.canned_app import CountingSource, counting_app


async def settle(pilot) -> None:  # type: ignore[no-untyped-def]
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def dialog(pilot) -> ConfirmScreen:  # type: ignore[no-untyped-def]
    """Wait for the confirmation (its worker waits for the answer: do not wait for workers)."""
    for _ in range(50):
        if isinstance(pilot.app.screen, ConfirmScreen):
            return pilot.app.screen
        await pilot.pause(0.05)
    raise AssertionError("no confirmation opened")


def toasts(app) -> list[str]:  # type: ignore[no-untyped-def]
    return [f"{n.title}: {n.message}" for n in app._notifications]


# -- defect 1: an action started from a view that fails says so -----------------------------
async def test_failed_dlq_action_shows_an_error():
    # Given the DLQ browser on canned data, whose export fails (no broker to read)
    app, _ = counting_app([demo_snapshot()], dead_letters={"thumbnails.dlq": demo_dead_letters(3)})
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        # When export is pressed
        await pilot.press("e")
        await settle(pilot)
        # Then the failure is shown, in a toast and in the view's help line
        assert any("export" in t and "no broker" in t for t in toasts(app)), toasts(app)
        assert "last action failed" in str(app.main.query_one("#dlq-help").render())


# -- defect 2: rows follow the order given -------------------------------------------------
async def test_dlq_rows_keep_their_order_after_a_filter_is_cleared():
    letters = demo_dead_letters(10)
    app, _ = counting_app([demo_snapshot()], dead_letters={"thumbnails.dlq": letters})
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        table = app.main.query_one(DlqView).query_one(KeyedTable)
        every = [dl.job_id for dl in letters]
        assert table.keys == every
        # When filtering by one error type, then clearing the filter with Esc
        await pilot.press("slash", *"type:TimeoutError", "enter")
        await settle(pilot)
        assert table.keys == every[1::2]
        await pilot.press("slash", "escape")
        await settle(pilot)
        # Then the rows are back in the DLQ's order (not the odd ones first)
        assert table.keys == every


async def test_new_critical_alert_goes_above_warnings_and_stuck_jobs_oldest_first():
    first = demo_snapshot()
    calm = replace(first, alerts=tuple(a for a in first.alerts if a.severity == "warning"))
    new = Alert("critical", "oldest_age", "zz-late", "waited long")
    jobs = (StuckJob("young", "q", 1, "w1", "h", 1, 0.0, 400.0, 300.0),
            StuckJob("old", "q", 1, "w1", "h", 1, 0.0, 900.0, 300.0))
    later = replace(first, alerts=(*calm.alerts, new), stuck_jobs=jobs)
    app, _ = counting_app([calm, later])
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        app.poll_now()
        await settle(pilot)
        keys = app.main.query_one(AlertsView).query_one(KeyedTable).keys
        assert keys[0] == "oldest_age:zz-late", keys
        assert app.main.query_one(StuckView).query_one(KeyedTable).keys == ["old", "young"]


# -- defect 3: fill counts ready messages only ---------------------------------------------
async def test_fill_column_counts_ready_only():
    snap = demo_snapshot()
    busy = replace(snap.queues[0], ready=0, unacked=1000, max_length=2000)
    assert fill_text(busy) == "0% / 2k"
    app, _ = counting_app([replace(snap, queues=(busy, *snap.queues[1:]))])
    async with app.run_test(size=(200, 50)) as pilot:
        await settle(pilot)
        table = app.main.query_one(QueueTable)
        assert table.cell_text("emails", 10).plain == "0% / 2k"


# -- defect 4: 80x24 keeps what matters ----------------------------------------------------
async def test_80x24_keeps_state_heartbeat_age_reason_and_help_keys():
    app, _ = counting_app([demo_snapshot()], dead_letters={"thumbnails.dlq": demo_dead_letters(3)})
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        queues = app.main.query_one(QueueTable).visible_columns
        assert {"name", "state", "ready", "oldest"} <= set(queues)
        footer = [getattr(k, "key", "") for k in app.main.query_one(PinnedFooter).children]
        assert footer[:2] == ["question_mark", "q"], footer
        await pilot.press("2")
        assert {"state", "beat"} <= set(app.main.query_one(WorkersView).query_one(KeyedTable)
                                         .visible_columns)
        await pilot.press("3")
        assert "age" in app.main.query_one(StuckView).query_one(KeyedTable).visible_columns
        await pilot.press("5")
        assert "reason" in app.main.query_one(AlertsView).query_one(KeyedTable).visible_columns
        status = app.main.query_one(StatusBar).render_text().plain
        assert "● connected" in status[:40]


async def test_wide_terminal_gives_room_to_names():
    app, _ = counting_app([demo_snapshot()])
    async with app.run_test(size=(260, 50)) as pilot:
        await settle(pilot)
        table = app.main.query_one(QueueTable)
        assert len(table.visible_columns) == 12
        widths = sum(c.width + 2 for c in table.columns.values())
        assert widths >= 200, widths  # no 100 empty columns on the right


# -- defect 5: the words before 'y' --------------------------------------------------------
async def test_delete_confirmation_says_what_and_where_in_words():
    app, _ = counting_app([demo_snapshot()], dead_letters={"thumbnails.dlq": demo_dead_letters(3)})
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("d")
        confirm = await dialog(pilot)
        text = f"{confirm.title_text} {confirm.detail}"
        assert "Delete 1 dead letter from thumbnails.dlq?" in text
        assert "deleteed" not in text and "{" not in text and "job job-0000-a" in text
        await pilot.press("n")
        await settle(pilot)
        await pilot.press("r")
        confirm = await dialog(pilot)
        assert "go back to queue thumbnails (1)" in confirm.detail
        await pilot.press("n")
        await settle(pilot)
        detail = str(app.main.query_one("#dlq-detail").render())
        assert "replayed 0x" not in detail and "ago)" in detail
        assert str(demo_dead_letters(1)[0].headers["x-qw-dead-at-ms"]) not in detail


# -- defect 6: keys ------------------------------------------------------------------------
async def test_esc_leaves_the_dlq_filter_and_view_keys_stay_in_their_view():
    app, _ = counting_app([demo_snapshot()], dead_letters={"thumbnails.dlq": demo_dead_letters(3)})
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("4", "slash", *"abc", "escape")
        box = app.main.query_one("#dlq-filter", Input)
        assert not box.has_focus and box.value == ""
        # Then 1 switches view (it no longer types into the filter)
        await pilot.press("1")
        assert app.main.active_view == "queues"
        # And 's' in the Workers view does not sort the hidden queue table
        table = app.main.query_one(QueueTable)
        await pilot.press("2", "s", "s")
        assert table.sort_column == "name"
        # And the palette lists no Textual 'Keys' twin of Help, and Screenshot goes somewhere
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert not [t for t in titles if t == "Keys"]
        assert len([t for t in titles if t.startswith("Help")]) == 1
        assert len([t for t in titles if t.startswith("Quit")]) == 1


async def test_screenshot_command_saves_into_the_state_dir(tmp_path):
    app, _ = counting_app([demo_snapshot()])
    app.settings = replace(app.settings, state_dir=tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.action_screenshot_to_state()
        await pilot.pause()
        saved = list((tmp_path / "screenshots").glob("*.svg"))
        assert len(saved) == 1 and any(str(saved[0]) in t for t in toasts(app))


async def test_enter_on_an_alert_shows_its_target():
    app, _ = counting_app([demo_snapshot()], dead_letters={"thumbnails.dlq": demo_dead_letters(2)})
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("5")
        table = app.main.query_one(AlertsView).query_one(KeyedTable)
        # the first alert: reports is at its cap (critical, kind fill) -> the queue's detail
        assert table.keys[0] == "fill:reports"
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, QueueDetailScreen) and app.screen.queue_name == "reports"
        await pilot.press("escape")
        # a hung worker alert -> the Workers view, on that worker
        table.move_cursor(row=table.keys.index("hung_worker:worker-r1"))
        await pilot.press("enter")
        assert app.main.active_view == "workers"
        assert app.main.query_one(WorkersView).query_one(KeyedTable).selected_key == "worker-r1"


# -- defect 7: stale data and refusals -----------------------------------------------------
async def test_stale_tables_are_dimmed_and_ages_keep_moving():
    now = [demo_snapshot().taken_at + 1]
    app, _source = counting_app([demo_snapshot()], clock=lambda: now[0], poll_interval=1.0,
                               fail_polls_after=1)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("3")
        stuck = app.main.query_one(StuckView).query_one(KeyedTable)
        first = str(stuck.get_row("7f3c9a")[1])
        # When polls fail from now on and 30 s pass
        await pilot.pause(1.5)
        now[0] += 30
        await pilot.pause(1.2)
        assert app.error is not None
        assert app.main.query_one("#views").has_class("stale")
        later = str(stuck.get_row("7f3c9a")[1])
        assert later != first, (first, later)
        assert "stale" in str(app.main.query_one("#stuck-help").render())


async def test_wrong_password_is_said_as_such():
    app, source = counting_app([demo_snapshot()], fail_polls_after=0, poll_interval=5.0)
    source.poll_error = AuthenticationFailed("management API: 401 Unauthorized")
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause(0.5)
        status = app.main.query_one(StatusBar).render_text().plain
        assert "login refused" in status and "disconnected" not in status, status


# -- defect 8: looking does not change what is seen ----------------------------------------
async def test_dlq_is_not_reread_on_every_depth_change():
    base = demo_snapshot()

    def with_depth(i: int):  # type: ignore[no-untyped-def]
        qs = tuple(replace(q, ready=37 + i) if q.name == "thumbnails.dlq" else q
                   for q in base.queues)
        return replace(base, queues=qs, taken_at=base.taken_at + i)

    app, source = counting_app([with_depth(i) for i in range(8)],
                               dead_letters={"thumbnails.dlq": demo_dead_letters(3)})
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        assert source.peeks == 1
        # When the depth changes on every poll
        for _ in range(6):
            app.poll_now()
            await settle(pilot)
        # Then the DLQ is not read again by itself (a read requeues: every letter redelivered)
        assert source.peeks == 1
        assert "l reloads" in str(app.main.query_one("#dlq-title").render())
        await pilot.press("l")
        await settle(pilot)
        assert source.peeks == 2
        # And once another view is shown, it does not read by itself at all
        await pilot.press("1")
        assert not app.main.query_one(DlqView).active


# -- feature: dead letters grouped by cause ------------------------------------------------
def test_message_shape_and_grouping():
    from queuewatch.tui.grouping import group_by_cause, message_shape

    assert message_shape("mailbox customer93@example.com does not exist") == \
        "mailbox <email> does not exist"
    assert message_shape("invalid literal for int() with base 10: 'x'") == \
        "invalid literal for int() with base <n>: <str>"
    causes = group_by_cause(demo_dead_letters(5))
    assert [(c.error_type, c.count) for c in causes] == [("ValueError", 3), ("TimeoutError", 2)]
    assert causes[0].first_ms is not None and causes[0].first_ms < (causes[0].last_ms or 0)


async def test_dead_letters_by_cause_act_on_a_whole_group():
    app, _ = counting_app([demo_snapshot()], dead_letters={"thumbnails.dlq": demo_dead_letters(6)})
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        # When 'b' groups the dead letters by cause
        await pilot.press("b")
        causes = app.main.query_one("#dlq-causes", KeyedTable)
        assert causes.row_count == 2 and causes.has_focus
        assert str(causes.get_row_at(0)[0]) == "3"
        # Then 'd' deletes the whole group, after a dry-run count
        await pilot.press("d")
        confirm = await dialog(pilot)
        assert confirm.title_text == "Delete 3 dead letters from thumbnails.dlq?"
        await pilot.press("n")
        await settle(pilot)
        # And Enter lists the group's dead letters
        await pilot.press("enter")
        await settle(pilot)
        dlq = app.main.query_one(DlqView)
        assert not dlq.by_cause and len(dlq.letters) == 3
        assert {dl.death.error_type for dl in dlq.letters.values()} == {"ValueError"}


async def test_queue_drills_down_to_its_dlq():
    app, _ = counting_app([demo_snapshot()], dead_letters={"thumbnails.dlq": demo_dead_letters(2),
                                                           "reports.dlq": demo_dead_letters(1)})
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        table = app.main.query_one(QueueTable)
        # From the queue's detail: D opens its DLQ in the browser
        table.move_cursor(row=table.get_row_index("reports"))
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, QueueDetailScreen)
        await pilot.press("D")
        await settle(pilot)
        assert app.main.active_view == "dlq" and app.main.query_one(DlqView).dlq == "reports.dlq"
        # From the Queues view: D on a queue does the same
        await pilot.press("1")
        table.move_cursor(row=table.get_row_index("thumbnails"))
        await pilot.press("D")
        await settle(pilot)
        assert app.main.query_one(DlqView).dlq == "thumbnails.dlq"
        assert len(app.main.query_one(DlqView).letters) == 2


async def test_a_table_in_a_hidden_tab_fits_the_width_once_shown():
    app, _ = counting_app([demo_snapshot()])
    async with app.run_test(size=(200, 50)) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        table = app.main.query_one(AlertsView).query_one(KeyedTable)
        assert sum(c.width + 2 for c in table.columns.values()) >= 190


async def test_enter_on_a_dead_letter_opens_its_detail_and_esc_comes_back():
    app, _ = counting_app([demo_snapshot()], dead_letters={"thumbnails.dlq": demo_dead_letters(2)})
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("enter")
        assert app.main.query_one("#dlq-detail-pane").has_focus
        await pilot.press("escape")
        assert app.main.query_one("#dlq-table").has_focus


# -- a replay that succeeded with some in doubt says so --------------------------------
async def test_a_replay_with_dead_letters_in_doubt_or_moved_back_says_so():
    # Given the DLQ browser on a source whose replay reports 2 in doubt (a shovel replay
    # that gave some back at its end: dlq/shovel.py, given_back)
    class InDoubt(CountingSource):
        async def replay_dlq(self, dlq, flt, *, dry_run, progress=None):  # type: ignore[no-untyped-def]
            count = (await super().replay_dlq(dlq, flt, dry_run=True)).count
            return Replayed(count, 0 if dry_run else 2,
                            () if dry_run else ("moved 7 dead letters back to the tail of "
                                                "'thumbnails.dlq': a shovel replay had held..",))

    source = InDoubt([demo_snapshot()], vhost="demo",
                     dead_letters={"thumbnails.dlq": demo_dead_letters(3)})
    app = make_app(Settings(), source, clock=lambda: demo_snapshot().taken_at + 5,
                   poll_interval=3600)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        # When every dead letter is replayed, confirmed
        await pilot.press("R")
        assert "Replay 3 dead letters" in (await dialog(pilot)).title_text
        await pilot.press("y")
        await settle(pilot)
        # Then the toast says how many, and that up to 2 may be in both places, as a warning
        assert any("replayed 3 of 3 dead letters from thumbnails.dlq; in doubt: up to 2" in t
                   for t in toasts(app)), toasts(app)
        assert [n.severity for n in app._notifications][-1] == "warning"
        # And what it first moved back (an interrupted replay's held back dead letters) too
        assert any("Moved 7 dead letters back to the tail of 'thumbnails.dlq'" in t
                   for t in toasts(app)), toasts(app)

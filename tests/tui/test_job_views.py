"""The Busy (6) and Scheduled/Retries (7) views on canned data: what they list, in which
order, Enter to a job's timeline, the filter, and what they say when they cannot know."""

from __future__ import annotations

from dataclasses import replace

from textual.pilot import Pilot

from queuewatch.monitor.model import FeedStatus
from queuewatch.tui.canned import T0, demo_busy_snapshot, demo_scheduled
from queuewatch.tui.screens.dialogs import ConfirmScreen
from queuewatch.tui.screens.job import JobScreen
from queuewatch.tui.widgets.keyed_table import KeyedTable
from tests.tui.canned_app import CountingSource, counting_app


async def settle(pilot: Pilot) -> None:  # type: ignore[type-arg]
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


async def pause(pilot: Pilot) -> None:  # type: ignore[type-arg]
    """Let a dialog open or close (a worker waiting on a dialog never completes)."""
    for _ in range(5):
        await pilot.pause(0.05)


def help_line(app, view: str) -> str:  # type: ignore[no-untyped-def]
    return str(app.main.query_one(f"#{view}-help").render())


def notes(app) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(n.message) for n in app._notifications]


class Recording(CountingSource):
    """Canned snapshots that record the scheduled-job actions asked of them."""

    asked: list[tuple[str, str]] = []

    async def cancel_scheduled(self, job_id: str) -> str:
        self.asked.append(("cancel", job_id))
        return "done"

    async def run_now(self, job_id: str) -> str:
        self.asked.append(("run-now", job_id))
        return "done"


async def test_busy_lists_fresh_in_flight_jobs_longest_first_and_drills_to_the_timeline():
    # Given three jobs on a live worker, one on a stuck-long worker, one on a hung one
    app, _ = counting_app([demo_busy_snapshot(0)], clock=lambda: T0 + 5)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("6")
        await settle(pilot)
        table = app.main.query_one("#busy-table", KeyedTable)
        # Then every fresh in-flight job is listed, longest running first; the hung worker's
        # old in-flight list (a stale beat) is not
        assert [k.split("@")[0] for k in table.keys] == ["7f3c9a", "mail-001", "mail-000",
                                                         "mail-002"]
        assert table.has_focus
        assert "4 running, longest first" in help_line(app, "busy")
        assert "1 worker not heard lately" in help_line(app, "busy")
        # And the filter keeps the matching rows; Esc brings them back in the same order
        await pilot.press("slash", *"emails", "enter")
        await settle(pilot)
        assert [k.split("@")[0] for k in table.keys] == ["mail-001", "mail-000", "mail-002"]
        await pilot.press("escape")
        await settle(pilot)
        assert len(table.keys) == 4 and table.keys[0].startswith("7f3c9a")
        assert (table.selected_key or "").startswith("mail-001")  # the cursor kept its row
        # And Enter opens the highlighted job's timeline
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, JobScreen) and app.screen.job_id == "mail-001"


async def test_busy_says_unknown_while_the_heartbeat_feed_is_down():
    snap = demo_busy_snapshot(0)
    down = replace(snap, heartbeats=FeedStatus(False, snap.taken_at - 20, "probe lost"),
                   workers=tuple(replace(w, heartbeat_state="unknown") for w in snap.workers))
    app, _ = counting_app([down], clock=lambda: T0 + 5)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("6")
        await settle(pilot)
        # Then no job is listed as running (their lists are old news) and the view says why
        assert app.main.query_one("#busy-table", KeyedTable).keys == []
        assert "heartbeats stale" in help_line(app, "busy")
        assert app.main.query_one("#busy-view").has_class("stale")


async def test_scheduled_lists_waiting_jobs_soonest_first_with_kind_and_due_time():
    app, source = counting_app([demo_busy_snapshot(0)], clock=lambda: T0 + 5)
    source.scheduled = demo_scheduled(T0)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("7")
        await settle(pilot)
        table = app.main.query_one("#scheduled-table", KeyedTable)
        # Then the soonest is first; retries and delayed jobs say which they are
        assert table.keys == ["d15ea5e", "b81e44", "c0ffee", "report-2026-01"]
        first = [str(c) for c in table.get_row("d15ea5e")]
        assert first[:6] == ["2s", "d15ea5e", "emails", "retry", "5", "00:00:07"]
        assert [str(c) for c in table.get_row("c0ffee")][3:5] == ["delayed", "1"]
        assert "4 waiting, soonest first" in help_line(app, "scheduled")
        assert "emails 2" in help_line(app, "scheduled")
        # And Enter opens the job's timeline
        await pilot.press("j", "enter")
        await settle(pilot)
        assert isinstance(app.screen, JobScreen) and app.screen.job_id == "b81e44"


async def test_scheduled_says_when_job_events_cannot_be_read():
    app, source = counting_app([demo_busy_snapshot(0)], clock=lambda: T0 + 5)
    assert source.scheduled is None
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("7")
        await settle(pilot)
        assert app.main.query_one("#scheduled-table", KeyedTable).keys == []
        assert ("scheduled jobs unknown: canned snapshots have no job events"
                in help_line(app, "scheduled"))


async def test_scheduled_cancel_and_run_now_are_refused_read_only_and_confirmed_otherwise():
    for read_only in (True, False):
        Recording.asked = []
        source = Recording([demo_busy_snapshot(0)], vhost="demo", read_only=read_only)
        source.scheduled = demo_scheduled(T0)
        from queuewatch.config import Settings
        from queuewatch.tui import make_app
        app = make_app(Settings(read_only=read_only), source, clock=lambda: T0 + 5,
                       poll_interval=3600)
        async with app.run_test(size=(160, 40)) as pilot:
            await settle(pilot)
            await pilot.press("7")
            await settle(pilot)
            await pilot.press("j", "j")  # c0ffee: a delayed job
            await settle(pilot)
            footer_keys = {key for key, b in app.screen.active_bindings.items()
                           if b.binding.action in ("cancel_scheduled", "run_now") and b.enabled}
            app.main.query_one("#scheduled-view").action_cancel_scheduled()
            await pilot.pause()
            if read_only:
                # Then read-only: greyed out, and refused with a word, nothing asked of the core
                assert footer_keys == set()
                await settle(pilot)
                app.main.query_one("#scheduled-view").action_run_now()
                await settle(pilot)
                assert not isinstance(app.screen, ConfirmScreen)
                assert sum("read-only" in n for n in notes(app)) == 2
                assert Recording.asked == []
            else:
                # Otherwise each asks first; n (keep) does nothing, y does it
                assert footer_keys == {"c", "n"}
                await pause(pilot)
                assert isinstance(app.screen, ConfirmScreen)
                assert "c0ffee" in app.screen.title_text
                await pilot.press("n")
                await pause(pilot)
                assert Recording.asked == []
                await pilot.press("n")
                await pause(pilot)
                assert isinstance(app.screen, ConfirmScreen)
                assert "delayed job for queue emails" in app.screen.detail
                await pilot.press("y")
                await pause(pilot)
                assert Recording.asked == [("run-now", "c0ffee")]
                # And run-now of a retry is refused: only a delayed job can run now
                await pilot.press("k")
                await pilot.press("n")
                await pause(pilot)
                assert not isinstance(app.screen, ConfirmScreen)
                assert any("waits for a retry" in n for n in notes(app))

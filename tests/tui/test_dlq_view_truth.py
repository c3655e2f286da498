"""The DLQ browser tells the truth after faults (QA pass, 2026-12-01, on `./dev demo` at 80x24):
no list of a DLQ that was deleted, no read age or dead letter age frozen while polls fail."""

from __future__ import annotations

from dataclasses import replace

from queuewatch.tui.canned import demo_dead_letters, demo_snapshot
from queuewatch.tui.widgets.dlq_view import DlqView
from queuewatch.tui.widgets.keyed_table import KeyedTable
from tests.tui.canned_app import counting_app


async def settle(pilot) -> None:  # type: ignore[no-untyped-def]
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def without(snapshot, *names: str):  # type: ignore[no-untyped-def]
    return replace(snapshot, queues=tuple(q for q in snapshot.queues if q.name not in names),
                   taken_at=snapshot.taken_at + 5)


def title(app) -> str:  # type: ignore[no-untyped-def]
    return str(app.main.query_one("#dlq-title").render())


async def test_a_deleted_dlq_picked_by_the_user_is_not_listed_as_if_it_held_its_letters():
    # Given the browser showing thumbnails.dlq, picked by the user, with 4 dead letters read
    base = demo_snapshot()
    app, _ = counting_app([base, without(base, "thumbnails.dlq")],
                          dead_letters={"thumbnails.dlq": demo_dead_letters(4),
                                        "reports.dlq": demo_dead_letters(1)})
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        view = app.main.query_one(DlqView)
        view.choose("thumbnails.dlq")
        await settle(pilot)
        assert len(view.letters) == 4
        # When the DLQ is deleted (the next poll no longer lists it)
        app.poll_now()
        await settle(pilot)
        # Then the browser says so, and lists nothing to replay or delete
        # (before: '(? messages)' over the 4 dead letters of a queue that was gone)
        assert "no longer exists" in title(app), title(app)
        assert view.letters == {} and view.query_one("#dlq-table", KeyedTable).row_count == 0


async def test_a_deleted_dlq_followed_by_the_browser_gives_way_to_another():
    # Given the browser following the deepest DLQ (thumbnails.dlq) by itself
    base = demo_snapshot()
    app, _ = counting_app([base, without(base, "thumbnails.dlq")],
                          dead_letters={"thumbnails.dlq": demo_dead_letters(4),
                                        "reports.dlq": demo_dead_letters(1)})
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        view = app.main.query_one(DlqView)
        assert view.dlq == "thumbnails.dlq" and len(view.letters) == 4
        # When it is deleted
        app.poll_now()
        await settle(pilot)
        # Then it shows a DLQ that exists, read afresh
        assert view.dlq == "reports.dlq", view.dlq
        assert len(view.letters) == 1


async def test_read_age_and_dead_letter_ages_move_on_while_polls_fail():
    now = [demo_snapshot().taken_at + 1]
    app, _ = counting_app([demo_snapshot()], clock=lambda: now[0], poll_interval=1.0,
                          fail_polls_after=1,
                          dead_letters={"thumbnails.dlq": demo_dead_letters(2)})
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        table = app.main.query_one(DlqView).query_one("#dlq-table", KeyedTable)
        key = next(iter(app.main.query_one(DlqView).letters))
        age_col = [c.key for c in table.columns.values()].index("age")
        assert "read 0s ago" in title(app)
        first_age = str(table.get_row(key)[age_col])
        # When polls fail from now on and 40 s pass
        await pilot.pause(1.5)
        now[0] += 40
        await pilot.pause(1.5)
        assert app.error is not None
        # Then the title says how old the read is, and that the depth is as of the last poll
        # (before: 'read 0s ago' and '(37 messages)' for as long as the outage lasted)
        assert "read 40s ago" in title(app), title(app)
        assert "stale" in title(app), title(app)
        # And the dead letters' ages keep counting (before: frozen at the read)
        assert str(table.get_row(key)[age_col]) != first_age, first_age


def with_depth(snapshot, name: str, ready: int, later: float = 0):  # type: ignore[no-untyped-def]
    return replace(snapshot, taken_at=snapshot.taken_at + later, queues=tuple(
        replace(q, ready=ready) if q.name == name else q for q in snapshot.queues))


async def test_a_whole_read_counts_the_dead_letters_while_the_polled_depth_lags():
    # Given a poll that says thumbnails.dlq holds 4 (the management API's statistics lag)
    # while a read of it finds 6, and a later poll that has caught up (6)
    base = demo_snapshot()
    app, source = counting_app(
        [with_depth(base, "thumbnails.dlq", 4), with_depth(base, "thumbnails.dlq", 6, later=5)],
        dead_letters={"thumbnails.dlq": demo_dead_letters(6)})
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        view = app.main.query_one(DlqView)
        assert view.dlq == "thumbnails.dlq" and len(view.letters) == 6
        # Then the title counts the 6 listed (before: '(4 messages)' over 6 rows, seen on
        # ./dev demo at 80x24)
        assert "(6 messages)" in title(app), title(app)
        reads = source.peeks
        # And when the poll catches up, nothing is said to have changed, nothing re-read
        app.poll_now()
        await settle(pilot)
        assert "(6 messages)" in title(app) and "changed since" not in title(app), title(app)
        assert source.peeks == reads


async def test_a_depth_that_changes_after_the_read_is_shown_and_offers_a_reload():
    base = demo_snapshot()
    app, _ = counting_app(
        [with_depth(base, "thumbnails.dlq", 6), with_depth(base, "thumbnails.dlq", 9, later=5)],
        dead_letters={"thumbnails.dlq": demo_dead_letters(6)})
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        assert "(6 messages)" in title(app), title(app)
        # When a poll says 9 (more dead letters came after the read)
        app.poll_now()
        await pilot.pause()
        # Then the title says 9 (the poll is the newer news)
        assert "(9 messages)" in title(app), title(app)

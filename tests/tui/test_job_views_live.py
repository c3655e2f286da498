"""The Scheduled/Retries view on the real broker: jobs published with a delay are listed from
the job events; cancel and run-now from the console change them (audited), and read-only
refuses both. The Busy view lists a job a real worker is running."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from queuewatch.audit import AuditLog
from queuewatch.jobs import Jobs, JobState
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec
from queuewatch.tui.screens.dialogs import ConfirmScreen
from queuewatch.tui.screens.job import JobScreen
from queuewatch.tui.widgets.keyed_table import KeyedTable
from queuewatch.worker import Job, Worker
from tests.helpers import declare
from tests.tui.live_helpers import live_app, wait_for
from tests.workers import running


def _seconds(due_in: str) -> int:
    """``"58s"`` or ``"1m00s"`` (the Due-in cell) in seconds."""
    minutes, _, seconds = due_in.rstrip("s").rpartition("m")
    return int(minutes or 0) * 60 + int(seconds)


def _select(table: KeyedTable, key: str) -> None:
    table.move_cursor(row=table.keys.index(key), animate=False)


async def test_scheduled_view_cancels_and_runs_now_real_delayed_jobs(connection, settings, vhost):
    # Given two jobs delayed by a minute on a real broker, recorded in the job events
    topo = await declare(connection, vhost, QueueSpec("jobs"), delay_levels=8)
    async with AsyncProducer(settings, topo) as producer:
        await producer.publish("jobs", {"x": 1}, job_id="later-a", delay=60)
        await producer.publish("jobs", {"x": 2}, job_id="later-b", delay=90)

    # When the console is read-only, the view lists them but refuses both actions
    ro = live_app(replace(settings, read_only=True))
    async with ro.run_test(size=(160, 40)) as pilot:
        await pilot.press("7")
        table = ro.main.query_one("#scheduled-table", KeyedTable)
        await wait_for(pilot, lambda: table.keys == ["later-a", "later-b"], what="both listed")
        row = [str(c) for c in table.get_row("later-a")]
        assert row[2:5] == ["jobs", "delayed", "1"]
        assert 40 <= _seconds(row[0]) <= 60, row[0]  # due in ~1 min ("58s", or "1m00s" at once)
        await pilot.press("c")
        await pilot.press("n")
        await pilot.pause(0.3)
        assert not isinstance(ro.screen, ConfirmScreen)

    # When the console may act: c cancels one, n runs the other now (each confirmed with y)
    app = live_app(settings)
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.press("7")
        table = app.main.query_one("#scheduled-table", KeyedTable)
        await wait_for(pilot, lambda: table.keys == ["later-a", "later-b"], what="both listed")
        _select(table, "later-a")
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: "later-a" not in table.keys, what="the cancelled job gone")
        _select(table, "later-b")
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: table.keys == [], what="the job run now gone")

    # Then the job events say so, the job run now is in its queue now, and both are audited
    async with Jobs(settings) as jobs:
        a, b = await jobs.status("later-a"), await jobs.status("later-b")
    assert a.state is JobState.CANCELLED
    assert b.state is JobState.QUEUED and b.data.get("run_now")
    entries = [(e["action"], e["target"]["job_id"], e["outcome"])
               for e in AuditLog.from_settings(settings).read()]
    assert ("cancel", "later-a", "ok") in entries and ("run-now", "later-b", "ok") in entries


async def test_busy_view_lists_a_running_job_and_opens_its_timeline(connection, settings, vhost):
    # Given a worker running a slow job
    topo = await declare(connection, vhost, QueueSpec("slow"))
    worker = Worker(settings, topo)
    release = asyncio.Event()

    @worker.job("slow")
    async def handle(job: Job) -> None:
        await release.wait()

    async with running(worker), AsyncProducer(settings, topo) as producer:
        await producer.publish("slow", {}, job_id="slow-1")
        app = live_app(settings)
        try:
            async with app.run_test(size=(160, 40)) as pilot:
                await pilot.press("6")
                table = app.main.query_one("#busy-table", KeyedTable)
                # Then it is listed from the worker's heartbeat, with its queue and attempt
                await wait_for(pilot, lambda: any(k.startswith("slow-1@") for k in table.keys),
                               what="the running job listed")
                row = [str(c) for c in table.get_row(table.keys[0])]
                assert row[0] == "slow-1" and row[2] == "slow" and row[4] == "1"
                # And Enter opens its timeline, read from the job events: running
                await pilot.press("enter")
                await wait_for(pilot, lambda: isinstance(app.screen, JobScreen), what="timeline")
                await wait_for(pilot, lambda: app.screen.status is not None, what="status read")
                assert app.screen.status.state is JobState.RUNNING  # type: ignore[attr-defined]
        finally:
            release.set()

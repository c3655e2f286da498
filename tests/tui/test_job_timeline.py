"""The console's job timeline (from the job events): find a job by id, and open the timeline
of a dead letter's job from the DLQ browser."""

from __future__ import annotations

from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec, RetryPolicy
from queuewatch.tui.screens.job import JobPrompt, JobScreen
from queuewatch.tui.widgets.dlq_view import DlqView
from queuewatch.tui.widgets.keyed_table import KeyedTable
from queuewatch.worker import Job, Worker
from tests.helpers import declare
from tests.tui.live_helpers import live_app, wait_for
from tests.workers import running

SIZE = (120, 36)


def _text(app) -> str:  # type: ignore[no-untyped-def]
    return str(app.screen.query_one("#job-text").render())


async def test_find_a_job_by_id_and_open_a_dead_letters_timeline(settings, connection, mgmt, vhost):
    # Given a job that failed once and died (one attempt), and one nobody published
    topo = await declare(connection, vhost, QueueSpec("orders", retry=RetryPolicy(max_attempts=1)),
                         mgmt=mgmt)
    worker = Worker(settings, topo)

    @worker.job("orders")
    async def handle(job: Job) -> None:
        raise ValueError("no such customer")

    async with running(worker), AsyncProducer(settings, topo) as producer:
        await producer.publish("orders", {"n": 1}, job_id="order-17")
        app = live_app(settings)
        async with app.run_test(size=SIZE) as pilot:
            # When the operator asks for a job by id (o), Then its timeline shows, to the death
            await pilot.press("o")
            await wait_for(pilot, lambda: isinstance(app.screen, JobPrompt), what="the prompt")
            await pilot.press(*"order-17", "enter")
            await wait_for(pilot, lambda: isinstance(app.screen, JobScreen), what="the timeline")
            await wait_for(pilot, lambda: "dead-lettered" in _text(app), what="the job's state")
            text = _text(app)
            assert "attempt 1 failed" in text and "ValueError: no such customer" in text
            assert "dead-lettered into orders.dlq" in text
            await pilot.press("escape")
            # An id nobody published answers unknown, not pending
            await pilot.press("o", *"nobody", "enter")
            await wait_for(pilot, lambda: isinstance(app.screen, JobScreen), what="the timeline")
            await wait_for(pilot, lambda: "unknown" in _text(app), what="unknown")
            await pilot.press("escape")
            # When the dead letter is highlighted in the DLQ browser and h is pressed
            await pilot.press("4")
            dlq = app.query_one(DlqView)
            table = dlq.query_one(KeyedTable)
            await wait_for(pilot, lambda: table.row_count == 1, what="the dead letter listed")
            table.focus()
            await pilot.press("h")
            # Then the same job's timeline opens
            await wait_for(pilot, lambda: isinstance(app.screen, JobScreen), what="the timeline")
            assert app.screen.job_id == "order-17"
            await wait_for(pilot, lambda: "dead-lettered" in _text(app), what="the job's state")

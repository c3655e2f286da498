"""Scheduling you can see: long delays by default, ``at=``, scheduled jobs listed with their
due time, and cancel / run-now of jobs that have not started."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest

from queuewatch.jobs import Jobs, JobState
from queuewatch.jobs.control import JobActionError, cancel_pending, run_now
from queuewatch.metrics.server import Exporter
from queuewatch.producer import AsyncProducer
from queuewatch.topology import DEFAULT_DELAY_LEVELS, QueueSpec, Topology
from queuewatch.worker import Job, Worker
from tests.helpers import declare, wait_until
from tests.workers import QUEUEWATCH, running


async def test_day_and_week_delays_are_accepted_by_default_and_listed(connection, settings, vhost):
    # Given the default topology (no delay_levels given)
    assert Topology(queues=()).max_delay >= 7 * 86400
    topo = await declare(connection, vhost, QueueSpec("reminders"), delay_levels=DEFAULT_DELAY_LEVELS)
    async with AsyncProducer(settings) as producer, Jobs(settings) as jobs:
        # When a reminder is published for tomorrow and one for next week (no topology given)
        await producer.publish("reminders", {"n": 1}, job_id="tomorrow", delay=86400)
        await producer.publish("reminders", {"n": 2}, job_id="next-week",
                               at=datetime.now(UTC) + timedelta(days=7))
        listed = await jobs.scheduled("reminders")
        week = await jobs.status("next-week")
    # Then both are scheduled, listed soonest first, with their due times
    assert [s.job_id for s in listed] == ["tomorrow", "next-week"]
    assert all(s.state is JobState.SCHEDULED for s in listed)
    assert abs(week.due_ms / 1000 - (time.time() + 7 * 86400)) < 60  # type: ignore[operator]
    assert topo.delay_levels == DEFAULT_DELAY_LEVELS
    # And the CLI lists them too
    out = subprocess.run([QUEUEWATCH, "jobs", "scheduled", "--vhost", vhost, "--queue", "reminders"],
                         capture_output=True, text=True, timeout=60,
                         env={"XDG_STATE_HOME": str(settings.state_dir), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "tomorrow" in out.stdout and "next-week" in out.stdout and "in 24.0h" in out.stdout and "in 7.0d" in out.stdout
    # And status counts them on their target queue (table and --json), as the exporter does
    env = {"XDG_STATE_HOME": str(settings.state_dir), "PATH": "/usr/bin:/bin"}
    table = subprocess.run([QUEUEWATCH, "status", "--vhost", vhost, "--no-heartbeats"],
                           capture_output=True, text=True, timeout=60, env=env)
    assert table.returncode == 0, table.stderr
    head, *rows = table.stdout.splitlines()[1:]
    row = next(r.split() for r in rows if r.startswith("reminders "))
    assert head.split()[-1] == "SCHED" and row[-1] == "2"
    as_json = subprocess.run([QUEUEWATCH, "status", "--json", "--vhost", vhost, "--no-heartbeats"],
                             capture_output=True, text=True, timeout=60, env=env)
    queues = {q["name"]: q for q in json.loads(as_json.stdout)["queues"]}
    assert queues["reminders"]["scheduled"] == 2 and queues["reminders.dlq"]["scheduled"] is None
    exporter = Exporter(settings, heartbeats=False, max_age=0.2)
    try:
        sample = exporter.registry.get_sample_value
        labels = {"vhost": vhost, "queue": "reminders"}
        await wait_until(lambda: sample("queuewatch_queue_scheduled_jobs", labels) == 2,
                         timeout=20, what="the exporter's scheduled count")
    finally:
        exporter.close()


async def test_at_in_the_past_runs_now_and_bad_at_is_refused(connection, settings, vhost):
    topo = await declare(connection, vhost, QueueSpec("jobs"))
    ran: list[str] = []
    worker = Worker(settings, topo)

    @worker.job("jobs")
    async def handle(job: Job) -> None:
        ran.append(job.job_id)

    async with running(worker), AsyncProducer(settings, topo) as producer:
        await producer.publish("jobs", {}, job_id="late", at=datetime.now(UTC) - timedelta(hours=1))
        await wait_until(lambda: ran == ["late"], timeout=10, what="the past-due job ran")
        with pytest.raises(ValueError, match="time zone"):
            await producer.publish("jobs", {}, at=datetime.now() + timedelta(hours=1))
        with pytest.raises(ValueError, match="either delay= or at="):
            await producer.publish("jobs", {}, delay=5, at=time.time() + 5)
        with pytest.raises(ValueError, match="finite"):
            await producer.publish("jobs", {}, delay=float("nan"))


async def test_cancel_and_run_now_of_scheduled_jobs(connection, settings, vhost):
    # Given two jobs delayed by 3 s and a worker
    topo = await declare(connection, vhost, QueueSpec("jobs"), delay_levels=4)
    ran: list[tuple[str, float]] = []
    worker = Worker(settings, topo)

    @worker.job("jobs")
    async def handle(job: Job) -> None:
        ran.append((job.job_id, time.monotonic()))

    async with running(worker), AsyncProducer(settings, topo) as producer, Jobs(settings) as jobs:
        start = time.monotonic()
        await producer.publish("jobs", {"x": 1}, job_id="to-cancel", delay=3)
        await producer.publish("jobs", {"x": 2}, job_id="to-run-now", delay=3)
        # When one is cancelled and the other run now
        cancelled = await cancel_pending(jobs, "to-cancel")
        assert cancelled.state_before is JobState.SCHEDULED
        assert (await jobs.status("to-cancel")).state is JobState.CANCELLED
        await run_now(jobs, "to-run-now")
        await wait_until(lambda: any(j == "to-run-now" for j, _ in ran), timeout=5, what="run now")
        assert ran[0][1] - start < 2.5  # it did not wait for its delay
        # Then after the delay passed, the cancelled job never ran and the delayed copy was
        # skipped: each ran exactly as often as asked
        await wait_until(lambda: _skips(jobs) >= 2, timeout=15, what="both delayed copies skipped")
        await asyncio.sleep(0.5)
        assert [j for j, _ in ran] == ["to-run-now"]
        gone = await jobs.status("to-cancel")
        done = await jobs.status("to-run-now")
        # Cancelling or running now a job that is not pending is refused with its state
        with pytest.raises(JobActionError, match="succeeded"):
            await cancel_pending(jobs, "to-run-now")
        with pytest.raises(JobActionError, match="unknown"):
            await run_now(jobs, "never-published")
    assert gone.state is JobState.CANCELLED and [e.kind for e in gone.events][-1] == "skipped"
    assert done.state is JobState.SUCCEEDED
    assert [e.kind for e in done.events].count("skipped") == 1


def _skips(jobs: Jobs) -> int:
    return sum(1 for job in ("to-cancel", "to-run-now")
               for e in jobs.index.events_of(job) if e.kind == "skipped")


async def test_read_only_refuses_cancel_of_a_scheduled_job(connection, settings, vhost):
    from dataclasses import replace

    from queuewatch.errors import ReadOnlyError

    topo = await declare(connection, vhost, QueueSpec("jobs"), delay_levels=4)
    async with AsyncProducer(settings, topo) as producer:
        await producer.publish("jobs", {}, job_id="s1", delay=10)
    async with Jobs(replace(settings, read_only=True)) as jobs:
        with pytest.raises(ReadOnlyError, match="read-only"):
            await cancel_pending(jobs, "s1")
        assert (await jobs.status("s1")).state is JobState.SCHEDULED

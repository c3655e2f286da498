"""The job status API over HTTP when things go wrong: the job events stream cannot answer (a
503 with the reason and ``Retry-After``, the documented answer, never a 500 with a traceback
in the log; a result wait still ends at its own timeout), and the server stopping while
clients stream events (nothing left running)."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from queuewatch.jobs import Jobs
from queuewatch.jobs.api import SYNC_TIMEOUT, UNSEEN_SYNC
from queuewatch.jobs.web import JobsWeb
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec
from queuewatch.worker import Job, Worker
from tests.helpers import declare
from tests.jobs_http import served
from tests.workers import running


async def test_a_stream_that_does_not_answer_is_a_503_with_the_reason(connection, settings, vhost,
                                                                    caplog):
    # Given the server over a job events stream that was deleted, with nothing to create it
    # again (as when the broker is away: the stream does not answer)
    topo = await declare(connection, vhost, QueueSpec("jobs"))
    async with AsyncProducer(settings, topo) as producer:
        await producer.publish("jobs", {}, job_id="j1")
    async with Jobs(settings, sync_timeout=1) as jobs:
        app = JobsWeb(jobs)
        port = await app.start("127.0.0.1", 0)
        try:
            channel = await connection.channel()
            await channel.queue_delete(settings.events_stream)
            jobs.recorder.stream = "nowhere"
            caplog.set_level(logging.INFO)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                # When a service asks for a job's status, or waits for its result
                for path in ("/jobs/j1", "/jobs/j1/result?timeout=1", "/jobs/never-seen"):
                    r = await http.get(path)
                    # Then it is told the stream did not answer, and to ask again later
                    assert r.status_code == 503, (path, r.status_code, r.text)
                    assert "did not answer" in r.json()["error"], r.text
                    assert r.headers["retry-after"] == "5"
                # And the server still answers what needs no stream
                assert (await http.get("/healthz")).status_code == 200
        finally:
            await app.close()
    # And the server logged no failure of its own
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_closing_the_server_with_streams_open_leaves_no_task_behind(connection, settings, vhost):
    # Given the server with two clients streaming events
    await declare(connection, vhost, QueueSpec("jobs"))
    async with Jobs(settings) as jobs:
        app = JobsWeb(jobs, keepalive=60)
        port = await app.start("127.0.0.1", 0)
        streams = []
        for _ in range(2):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")
            streams.append(writer)
        # When the server closes (serve stopped by SIGTERM) while they are connected
        await app.close()
        # Then no task of theirs is left running (to fail later, unretrieved, on a dead socket)
        left = [t for t in asyncio.all_tasks()
                if not t.done() and any(name in repr(t.get_coro())
                                        for name in ("_pump", "_until_eof", "Event.wait"))]
        assert not left, left
        for writer in streams:
            writer.close()


async def test_a_result_wait_ends_at_its_timeout_while_the_stream_is_silent(connection, settings,
                                                                           vhost):
    # Given the server (the default 10 s bound on reading the stream up to now), a job that
    # succeeded, and one queued with no worker to run it
    topo = await declare(connection, vhost, QueueSpec("jobs"), QueueSpec("idle"))
    worker = Worker(settings, topo, worker_id="w-silent")

    @worker.job("jobs")
    async def answer(job: Job) -> dict[str, int]:
        return {"n": 7}

    async with Jobs(settings) as jobs, served(jobs) as (_, http), \
            AsyncProducer(settings, topo) as producer:
        assert jobs.sync_timeout == SYNC_TIMEOUT == 10
        async with running(worker):
            await producer.publish("jobs", {}, job_id="done")
            assert (await http.get("/jobs/done/result", params={"timeout": 20})).status_code == 200
        await producer.publish("idle", {}, job_id="waiting")
        # (timeout=0 while the stream answers: the current state, at once)
        started = time.monotonic()
        r = await http.get("/jobs/waiting/result", params={"timeout": 0})
        assert r.status_code == 504 and r.json()["state"] == "queued", r.text
        assert time.monotonic() - started < UNSEEN_SYNC
        # When the stream goes silent (its consumer stays subscribed, but the reader's markers
        # go nowhere: the read up to now never completes)
        jobs.recorder.stream = "nowhere"

        async def timed(path: str, **params: float) -> tuple[httpx.Response, float]:
            started = time.monotonic()
            r = await http.get(path, params=params)
            return r, time.monotonic() - started

        # Then a wait of 1 s for the queued job's result says "not yet" (504, with its state)
        # after about 1 s, not after the read's 10 s bound
        r, took = await timed("/jobs/waiting/result", timeout=1)
        assert r.status_code == 504 and r.json()["state"] == "queued", r.text
        assert 1 <= took < 3, took
        # And timeout=0 answers at once with the current state
        r, took = await timed("/jobs/waiting/result", timeout=0)
        assert r.status_code == 504 and r.json()["state"] == "queued", r.text
        assert took < 1, took
        # And the finished job's result comes within the timeout too (at once with 0)
        for timeout in (1, 0):
            r, took = await timed("/jobs/done/result", timeout=timeout)
            assert r.status_code == 200 and r.json()["result"] == {"n": 7}, r.text
            assert took < timeout + 1, (timeout, took)
        # While an id the server never read cannot be told unknown: 503, after at most the
        # least time given to that read (1 s), not the 10 s bound either
        r, took = await timed("/jobs/never-seen/result", timeout=0)
        assert r.status_code == 503 and "did not answer within 1s" in r.json()["error"], r.text
        assert r.headers["retry-after"] == "5"
        assert UNSEEN_SYNC <= took < UNSEEN_SYNC + 2, took

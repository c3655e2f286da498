"""The job status API over HTTP when things go wrong: the job events stream cannot answer (a
503 with the reason and ``Retry-After``, the documented answer, never a 500 with a traceback
in the log), and the server stopping while clients stream events (nothing left running)."""

from __future__ import annotations

import asyncio
import logging

import httpx

from queuewatch.jobs import Jobs
from queuewatch.jobs.web import JobsWeb
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec
from tests.helpers import declare


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

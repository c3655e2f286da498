"""The job status API over HTTP (``queuewatch serve``) on the real broker: status and
timeline by id, results, bad input, basic auth, and the live event stream (SSE) with
resumption by Last-Event-ID."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import ssl
import subprocess
from collections import defaultdict
from pathlib import Path

import bcrypt
import httpx
import pytest

from queuewatch.jobs import Jobs
from queuewatch.jobs.web import JobsWeb
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec, RetryPolicy
from queuewatch.webconfig import WebConfig
from queuewatch.worker import Job, Worker
from tests.helpers import declare
from tests.jobs_http import SseEvent, served, sse_events
from tests.tls import make_ca, make_cert
from tests.workers import QUEUEWATCH, running

FAST_RETRY = RetryPolicy(max_attempts=3, backoff_initial=1, backoff_multiplier=1, jitter=0)



async def test_timeline_result_and_bad_input_over_http(connection, settings, vhost):
    # Given a job that fails twice, then succeeds with a value
    topo = await declare(connection, vhost, QueueSpec("jobs", retry=FAST_RETRY), delay_levels=4)
    worker = Worker(settings, topo, worker_id="w-http")

    @worker.job("jobs")
    async def flaky(job: Job) -> dict[str, int]:
        if job.payload.get("sleep"):
            await asyncio.sleep(job.payload["sleep"])
        if job.attempt < 3 and job.payload.get("flaky"):
            raise RuntimeError(f"boom {job.attempt}")
        if job.payload.get("fail"):
            raise ValueError("no such customer")
        return {"answer": 42, "attempt": job.attempt}

    async with Jobs(settings) as jobs, served(jobs) as (_, http), running(worker), \
            AsyncProducer(settings, topo) as producer:
        await producer.publish("jobs", {"flaky": True}, job_id="flaky/1")
        # When a service waits for the result over HTTP (the id percent-encoded)
        r = await http.get("/jobs/flaky%2F1/result", params={"timeout": 20})
        # Then it gets the handler's value once the third attempt succeeded
        assert r.status_code == 200, r.text
        assert r.json() == {"job_id": "flaky/1", "state": "succeeded",
                            "result": {"answer": 42, "attempt": 3}}
        # And the status shows three attempts with their errors, workers and durations
        r = await http.get("/jobs/flaky%2F1")
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        body = r.json()
        assert body["state"] == "succeeded" and body["queue"] == "jobs"
        assert [a["outcome"] for a in body["attempts"]] == ["failed", "failed", "succeeded"]
        assert [a["error"] for a in body["attempts"][:2]] == ["boom 1", "boom 2"]
        assert all(a["worker"]["name"] == "w-http" and a["duration"] is not None
                   for a in body["attempts"])
        assert [e["kind"] for e in body["events"]] == [
            "accepted", "started", "attempt_failed", "retry_scheduled", "started",
            "attempt_failed", "retry_scheduled", "started", "succeeded"]

        # A dead-lettered job's result is its error (409); a slow one times out (504)
        await producer.publish("jobs", {"fail": True}, job_id="dead")
        r = await http.get("/jobs/dead/result", params={"timeout": 20})
        assert r.status_code == 409, r.text
        assert r.json()["state"] == "dead_lettered" and r.json()["error"] == "no such customer"
        await producer.publish("jobs", {"sleep": 3}, job_id="slow")
        r = await http.get("/jobs/slow/result", params={"timeout": 0.3})
        assert r.status_code == 504 and r.json()["state"] in ("queued", "running"), r.text

        # Unknown ids are unknown (404), never pending
        r = await http.get("/jobs/nobody-published-this")
        assert r.status_code == 404 and r.json()["state"] == "unknown"
        r = await http.get("/jobs/nobody-published-this/result", params={"timeout": 0})
        assert r.status_code == 404 and r.json() == {"job_id": "nobody-published-this",
                                                     "state": "unknown"}
        # Malformed input is a clear 400, not a traceback
        for path in ("/jobs/a%0Ab", "/jobs/" + "x" * 300, "/jobs/%ff%fe",
                     "/jobs/flaky%2F1/result?timeout=abc", "/jobs/flaky%2F1/result?timeout=-1",
                     "/jobs/flaky%2F1/result?timeout=nan", "/events?job=",
                     "/events?colour=red"):
            r = await http.get(path)
            assert r.status_code == 400, (path, r.status_code, r.text)
            assert r.json()["error"] and "Traceback" not in r.text
        r = await http.get("/events", headers={"Last-Event-ID": "yesterday"})
        assert r.status_code == 400 and "Last-Event-ID" in r.json()["error"]
        # (a position past SQLite's integers: it was a 200 head, then a 500 and a traceback)
        for last in ("99999999999999999999-0", f"0-{2**63}-ab12"):
            r = await http.get("/events", params={"last_event_id": last})
            assert r.status_code == 400 and "Last-Event-ID" in r.json()["error"], r.text
        assert (await http.get("/nothing-here")).status_code == 404
        r = await http.post("/jobs/flaky%2F1")
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
        assert (await http.get("/healthz")).json() == {"status": "ok"}


async def _raw(port: int, request: bytes) -> bytes:
    """Everything the server sends for one raw request, until it closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_head_answers_like_get_without_a_body(connection, settings, vhost):
    # Given the server, and a job it knows
    topo = await declare(connection, vhost, QueueSpec("jobs"))
    async with AsyncProducer(settings, topo) as producer:
        await producer.publish("jobs", {}, job_id="known")
    async with Jobs(settings) as jobs, served(jobs) as (app, http):
        assert app.port is not None
        for path, status in (("/healthz", 200), ("/jobs/known", 200), ("/jobs/nobody", 404),
                             ("/jobs/known/result?timeout=0", 504), ("/jobs/a%0Ab", 400),
                             ("/nothing-here", 404), ("/events?queue=jobs", 200)):
            # When a monitor or curl -I asks with HEAD (RFC 9110: a server that has GET
            # has HEAD; before: 405, with a body a HEAD answer must not have)
            raw = await _raw(app.port, f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            head, sep, body = raw.partition(b"\r\n\r\n")
            # Then it gets the GET's status and headers, and no body
            assert head.startswith(f"HTTP/1.1 {status} ".encode()), (path, raw[:200])
            assert sep and body == b"", (path, raw[:300])
            get = await http.get(path) if path != "/events?queue=jobs" else None
            if get is not None:
                assert get.status_code == status
                length = re.search(rb"(?i)content-length: (\d+)", head)
                assert length and int(length.group(1)) == len(get.content), (path, head)
        assert b"text/event-stream" in raw.lower()
        # And a method the API does not take is still a 405 naming both
        r = await http.request("DELETE", "/jobs/known")
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"


@pytest.fixture(scope="module")
def web_config(tmp_path_factory) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """(web-config file, CA certificate): TLS and one basic-auth user, as the exporter's."""
    d = tmp_path_factory.mktemp("web")
    ca = make_ca(d)
    server = make_cert(d, ca, "server")
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
    cfg = d / "web.yml"
    cfg.write_text(f"tls_server_config:\n  cert_file: {server.cert.name}\n  key_file: "
                   f"{server.key.name}\nbasic_auth_users:\n  ops: '{hashed}'\n")
    return cfg, ca.cert


async def test_tls_and_basic_auth_guard_every_route_but_healthz(connection, settings, vhost, web_config):
    # Given the server with the exporter's web config (TLS, one user)
    cfg, ca = web_config
    await declare(connection, vhost, QueueSpec("jobs"))
    web = WebConfig.load(cfg)
    async with Jobs(settings) as jobs:
        app = JobsWeb(jobs, web=web)
        port = await app.start("127.0.0.1", 0)
        assert app.scheme == "https"
        try:
            verify = ssl.create_default_context(cafile=str(ca))
            async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=verify,
                                         timeout=30) as http:
                # Then without a user, or with a wrong password, every route is 401
                for path in ("/jobs/x", "/jobs/x/result?timeout=0", "/events"):
                    r = await http.get(path)
                    assert r.status_code == 401, path
                    assert r.headers["www-authenticate"].startswith("Basic realm=")
                    assert (await http.get(path, auth=("ops", "wrong"))).status_code == 401
                # And with the user's password it answers (over TLS), SSE included
                assert (await http.get("/jobs/x", auth=("ops", "s3cret"))).status_code == 404
                async with http.stream("GET", "/events", auth=("ops", "s3cret")) as r:
                    assert r.status_code == 200
                    assert r.headers["content-type"].startswith("text/event-stream")
                assert (await http.get("/healthz")).status_code == 200
            # And plain HTTP to the TLS port gets nothing
            with pytest.raises(httpx.HTTPError):
                async with httpx.AsyncClient(timeout=5) as plain:
                    await plain.get(f"http://127.0.0.1:{port}/jobs/x", auth=("ops", "s3cret"))
        finally:
            await app.close()


def test_serve_with_a_broken_web_config_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "web.yml"
    bad.write_text("basic_auth_users:\n  ops: plain-text-password\n")
    for extra in (["--web-config", str(bad)], ["--web-config", str(tmp_path / "missing.yml")]):
        done = subprocess.run([QUEUEWATCH, "serve", "--port", "0", *extra], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 2, done
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "web config" in lines[0] and "Traceback" not in done.stderr


async def _collect(http: httpx.AsyncClient, url: str, n: int, *, last_event_id: str | None = None,
                   timeout: float = 60) -> list[SseEvent]:
    got: list[SseEvent] = []

    async def read() -> None:
        async for event in sse_events(http, url, last_event_id=last_event_id):
            got.append(event)
            if len(got) >= n:
                return

    await asyncio.wait_for(read(), timeout)
    return got


async def test_sse_shows_each_job_in_order_and_resumes_without_gaps(connection, settings, vhost):
    # Given a worker, the HTTP server, and a client streaming the queue's events
    topo = await declare(connection, vhost, QueueSpec("jobs"), QueueSpec("other"))
    worker = Worker(settings, topo, concurrency=20)

    @worker.job("jobs")
    async def handle(job: Job) -> int:
        return int(job.payload["n"])

    async with Jobs(settings) as jobs, served(jobs, keepalive=0.5) as (_, http), \
            running(worker), AsyncProducer(settings, topo) as producer:
        url = "/events?queue=jobs"
        first_half = asyncio.create_task(_collect(http, url, 150))
        await asyncio.sleep(0.5)  # the client is subscribed
        # When 100 jobs are published and processed (and one on another queue)
        await producer.publish("other", {"n": -1}, job_id="elsewhere")
        await asyncio.gather(*(producer.publish("jobs", {"n": i}, job_id=f"job-{i}")
                               for i in range(100)))
        part1 = await first_half
        # And the client, disconnected after 150 events, comes back with its last id (as
        # EventSource does: the last id field it received)
        last_id = [e.id for e in part1 if e.id is not None][-1]
        sent_after = [i for i, e in enumerate(part1) if e.id == last_id][-1] + 1
        part2 = await _collect(http, url, 150 + len(part1) - sent_after, last_event_id=last_id)
        # Then a fresh client reading from the start sees exactly what the two parts saw:
        # no gap (a repeat only of events sent after the last id, at most)
        full = await _collect(http, url, 300)
        # And a job's own stream holds only that job
        own = await _collect(http, "/events?job=job-7", 3)

    def ids(events: list[SseEvent]) -> list[str]:
        return [json.loads(e.data)["id"] for e in events]

    assert ids(part2[:len(part1) - sent_after]) == ids(part1[sent_after:]), "not a clean repeat"
    assert ids(part1) + ids(part2[len(part1) - sent_after:]) == ids(full), "a gap or a repeat"
    assert len(set(ids(full))) == 300
    per_job: dict[str, list[str]] = defaultdict(list)
    for e in full:
        data = json.loads(e.data)
        assert data["queue"] == "jobs" and e.event == data["kind"]
        per_job[data["job"]].append(e.event or "")
    assert len(per_job) == 100
    out_of_order = {j: kinds for j, kinds in per_job.items()
                    if kinds != ["accepted", "started", "succeeded"]}
    assert not out_of_order, out_of_order
    assert [json.loads(e.data)["job"] for e in own] == ["job-7"] * 3


async def test_sse_sends_keepalive_comments_while_idle(connection, settings, vhost):
    await declare(connection, vhost, QueueSpec("jobs"))
    async with Jobs(settings) as jobs, served(jobs, keepalive=0.2) as (app, http):
        async with http.stream("GET", "/events") as response:
            lines: list[str] = []

            async def read() -> None:
                async for line in response.aiter_lines():
                    lines.append(line)
                    if lines.count(": keep-alive") >= 2:
                        return

            await asyncio.wait_for(read(), 5)
            assert len(app.hub.subscribers) == 1
        # And a client that goes away is forgotten
        await asyncio.sleep(0.3)
        assert not app.hub.subscribers


async def test_sse_resumes_on_another_host_without_gaps(connection, settings, vhost, tmp_path):
    # Given 50 finished jobs, and host A's index built live while they ran
    topo = await declare(connection, vhost, QueueSpec("jobs"))
    worker = Worker(settings, topo, concurrency=20)

    @worker.job("jobs")
    async def handle(job: Job) -> int:
        return int(job.payload["n"])

    async with Jobs(settings, index=tmp_path / "a.sqlite3") as a, served(a) as (_, http_a):
        async with running(worker), AsyncProducer(settings, topo) as producer:
            for i in range(50):
                await producer.publish("jobs", {"n": i}, job_id=f"job-{i}")
            await asyncio.gather(*(a.wait(f"job-{i}", 30) for i in range(50)))
        part1 = await _collect(http_a, "/events?queue=jobs", 75)
        # When host B (an index built in one catch-up: numbered its own way) takes over
        async with Jobs(settings, index=tmp_path / "b.sqlite3") as b, served(b) as (_, http_b):
            differ = [e for e in a.index.events_after(None, 1000)
                      if a.index.position_of(e.event_id) != b.index.position_of(e.event_id)]
            last_id = [e.id for e in part1 if e.id is not None][-1]
            sent_after = [i for i, e in enumerate(part1) if e.id == last_id][-1] + 1
            # Then the client resuming there with A's last id misses nothing
            rest = await _collect(http_b, "/events?queue=jobs", 150 - sent_after, last_event_id=last_id)
            full = await _collect(http_b, "/events?queue=jobs", 150)

    def ids(events: list[SseEvent]) -> list[str]:
        return [json.loads(e.data)["id"] for e in events]

    assert differ, "both hosts numbered the events alike: the test proves nothing"
    seen = ids(part1[:sent_after])
    resumed = seen + [i for i in ids(rest) if i not in seen]
    assert resumed == ids(full), "a gap or a reordering after the move to host B"


async def test_queuewatch_serve_runs_answers_and_stops_on_sigterm(connection, settings, vhost, tmp_path):
    await declare(connection, vhost, QueueSpec("jobs"))
    env = {**os.environ, "QUEUEWATCH_AMQP_URL": settings.amqp_url,
           "XDG_STATE_HOME": str(tmp_path / "state")}
    proc = subprocess.Popen([QUEUEWATCH, "serve", "--port", "0", "--vhost", vhost],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{match.group(1)}", timeout=30) as http:
            # (it listens before it has read the job events: a request waits for that read)
            r = await http.get("/jobs/never-published")
            assert r.status_code == 404 and r.json()["state"] == "unknown"
            assert (await http.get("/healthz")).json() == {"status": "ok"}
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
    assert code == 0 and "Traceback" not in (proc.stderr.read() if proc.stderr else "")

"""``queuewatch serve`` started while the broker does not answer: it listens at once (as the
exporter does), answers the job routes 503 with the reason and ``Retry-After`` (``/healthz``
200 "starting", ``/readyz`` 503), and serves once the broker answers, without a restart. It
used to listen on nothing, then exit 2 after 60 s (a SIGTERM meanwhile held until then). A
broker that refuses the credentials still ends it at once: exit 2, one line."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import bcrypt
import httpx
import pytest

from queuewatch.config import Settings
from queuewatch.jobs import Jobs
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec
from queuewatch.webconfig import WebConfig
from queuewatch.worker import Job, Worker
from tests.helpers import declare, wait_until
from tests.jobs_http import served
from tests.proxy import TcpProxy
from tests.workers import QUEUEWATCH, running

pytestmark = pytest.mark.timeout(60)

#: Seconds ``queuewatch serve`` may take to print its address (Python and queuewatch import).
LISTEN_WITHIN = 8.0


def _via(settings: Settings, port: int, password: str | None = None) -> str:
    """``settings``' AMQP URL going to 127.0.0.1:``port``, with ``password`` when given."""
    parts = urlsplit(settings.amqp_url)
    user, secret = settings.credentials
    return urlunsplit((parts.scheme, f"{user}:{password or secret}@127.0.0.1:{port}",
                       parts.path, parts.query, ""))


def _spawn(settings: Settings, vhost: str, amqp_url: str, tmp_path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "QUEUEWATCH_AMQP_URL": amqp_url, "XDG_STATE_HOME": str(tmp_path / "state"),
           "QUEUEWATCH_STATE_DIR": str(settings.state_dir)}
    env.pop("QUEUEWATCH_AMQP_URLS", None)
    return subprocess.Popen([QUEUEWATCH, "serve", "--port", "0", "--vhost", vhost],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


async def _address(proc: subprocess.Popen[str]) -> str:
    """The base URL ``serve`` printed, within :data:`LISTEN_WITHIN` s."""
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), LISTEN_WITHIN)
    except TimeoutError:
        raise AssertionError(f"queuewatch serve printed no address within {LISTEN_WITHIN:g}s "
                             "(it listens on nothing until the broker answers?)") from None
    match = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
    assert match, line
    return match.group(1)


def _stop(proc: subprocess.Popen[str]) -> tuple[int, float, str]:
    """SIGTERM: exit code, seconds to exit, stderr."""
    started = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        code = -9
    took = time.monotonic() - started
    return code, took, proc.stderr.read() if proc.stderr else ""


async def test_serve_listens_while_the_broker_is_away_and_answers_once_it_is_back(
        connection, settings, vhost, tmp_path):
    # Given a job that was published and processed (on a direct link), and the broker's
    # link cut for `queuewatch serve`
    topo = await declare(connection, vhost, QueueSpec("jobs"))
    worker = Worker(settings, topo, worker_id="w-serve-start")

    @worker.job("jobs")
    async def answer(job: Job) -> dict[str, int]:
        return {"n": 42}

    async with running(worker), AsyncProducer(settings, topo) as producer, \
            Jobs(settings, index=tmp_path / "direct.sqlite3") as direct:
        await producer.publish("jobs", {}, job_id="done-before")
        assert (await direct.wait("done-before", 20)).state.value == "succeeded"
    with TcpProxy(("127.0.0.1", urlsplit(settings.amqp_url).port or 5672)) as proxy:
        proxy.cut()
        proc = _spawn(settings, vhost, _via(settings, proxy.port), tmp_path)
        try:
            # When it starts
            base = await _address(proc)
            async with httpx.AsyncClient(base_url=base, timeout=15) as http:
                # Then it listens, and a job's status is a 503 that says why, with Retry-After
                for path in ("/jobs/done-before", "/jobs/done-before/result?timeout=5",
                             "/events?queue=jobs"):
                    started = time.monotonic()
                    r = await http.get(path)
                    assert r.status_code == 503, (path, r.status_code, r.text)
                    assert time.monotonic() - started < 3, (path, "not a hang")
                    error = r.json()["error"]
                    assert error.startswith("the broker has not answered yet (for "), error
                    assert "cannot connect to RabbitMQ" in error, error
                    assert f":{settings.credentials[1]}@" not in error, error
                    assert r.headers["retry-after"] == "5"
                # And /healthz says the process is up but starting; /readyz says not ready
                health = await http.get("/healthz")
                assert health.status_code == 200, health.text
                assert health.json()["status"] == "starting", health.text
                assert health.json()["broker"] == "not connected", health.text
                ready = await http.get("/readyz")
                assert ready.status_code == 503 and ready.json()["status"] == "starting"
                # When the broker answers again, a few reconnect attempts later
                await asyncio.sleep(2)
                assert (await http.get("/jobs/done-before")).status_code == 503
                proxy.restore()
                restored = time.monotonic()

                async def served() -> bool:
                    return (await http.get("/jobs/done-before")).status_code == 200

                # Then, without a restart, the job's status is served (the link's backoff
                # is capped at 5 s), its result too, and an unknown id is a 404
                await wait_until(served, timeout=12, interval=0.25, what="status served")
                assert time.monotonic() - restored < 12
                r = await http.get("/jobs/done-before")
                assert r.json()["state"] == "succeeded", r.text
                r = await http.get("/jobs/done-before/result", params={"timeout": 5})
                assert r.status_code == 200 and r.json()["result"] == {"n": 42}, r.text
                assert (await http.get("/jobs/never-published")).status_code == 404
                assert (await http.get("/healthz")).json() == {"status": "ok"}
                assert (await http.get("/readyz")).status_code == 200
        finally:
            code, _, err = _stop(proc)
    # And it stops on SIGTERM with exit 0, no traceback, no password in its log
    assert code == 0, err
    assert "Traceback" not in err and f":{settings.credentials[1]}@" not in err, err


async def test_sigterm_while_waiting_for_the_broker_exits_0_promptly(settings, vhost, tmp_path):
    # Given `queuewatch serve` waiting for a broker whose link is cut
    with TcpProxy(("127.0.0.1", urlsplit(settings.amqp_url).port or 5672)) as proxy:
        proxy.cut()
        proc = _spawn(settings, vhost, _via(settings, proxy.port), tmp_path)
        try:
            await asyncio.sleep(3)  # (imported, started, retrying: not waiting for its address)
            assert proc.poll() is None, proc.communicate()
        finally:
            # When it is sent SIGTERM
            code, took, err = _stop(proc)
    # Then it exits 0 within a couple of seconds (it held the signal until its 60 s wait
    # for the broker ended, then exited 2)
    assert code == 0, err
    assert took < 3, took
    assert "Traceback" not in err, err


async def test_a_wrong_password_ends_serve_at_once_with_one_line(settings, vhost, tmp_path):
    # Given a password the broker refuses
    password = "not-the-password-7f3a"
    port = urlsplit(settings.amqp_url).port or 5672
    proc = _spawn(settings, vhost, _via(settings, port, password=password), tmp_path)
    # When `queuewatch serve` starts with it
    try:
        out, err = await asyncio.to_thread(proc.communicate, timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"still running after 20 s: {err}") from None
    # Then it exits 2 with one line that says so: no traceback, no password, no retry
    assert proc.returncode == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("queuewatch: error: ") and "refused the credentials" in lines[0]
    assert password not in out + err and "Traceback" not in err


async def test_health_while_starting_tells_no_stranger_where_the_broker_is(settings, tmp_path):
    from queuewatch.jobs.startup import Startup

    # Given the server with basic auth (its job routes need a user, /healthz and /readyz do
    # not), started while the broker's link is cut
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
    (tmp_path / "web.yml").write_text(f"basic_auth_users:\n  ops: '{hashed}'\n")
    web = WebConfig.load(tmp_path / "web.yml")
    with TcpProxy(("127.0.0.1", urlsplit(settings.amqp_url).port or 5672)) as proxy:
        proxy.cut()
        jobs = Jobs(replace(settings, amqp_url=_via(settings, proxy.port), amqp_urls=()))
        startup = Startup(jobs)
        async with served(jobs, web=web, startup=startup) as (_, http):
            startup.begin()
            await wait_until(lambda: jobs.link.last_error is not None, what="a failed connect")
            # When a stranger asks how it is
            health, ready = await http.get("/healthz"), await http.get("/readyz")
            # Then it is up and starting, not ready, and the broker's address is not told
            assert health.status_code == 200 and ready.status_code == 503, (health, ready)
            for r in (health, ready):
                assert r.json()["status"] == "starting" and "reason" not in r.json(), r.text
                assert str(proxy.port) not in r.text, r.text
            # And a user asking for a job is told why (a stranger: 401, as ever)
            assert (await http.get("/jobs/x")).status_code == 401
            r = await http.get("/jobs/x", auth=("ops", "s3cret"))
            assert r.status_code == 503 and "has not answered yet" in r.json()["error"], r.text
        await startup.close()
        await jobs.close()

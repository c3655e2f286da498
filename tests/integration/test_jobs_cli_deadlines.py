"""``queuewatch jobs result ID --timeout S`` as a script uses it: S bounds the whole command,
the connection to the broker and the first read of the job events included."""

from __future__ import annotations

import json
import time

import pytest

from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec
from queuewatch.worker import Job, Worker
from tests.helpers import declare
from tests.nodes import free_port
from tests.workers import running


async def test_result_timeout_bounds_the_command_when_the_broker_does_not_answer(cli, monkeypatch):
    # Given a broker address where nothing listens (the broker is down)
    monkeypatch.setenv("QUEUEWATCH_AMQP_URL", f"amqp://guest:guest@127.0.0.1:{free_port()}/")
    # When a script waits for a result with --timeout 2
    t0 = time.monotonic()
    code, _, err = await cli("jobs", "result", "some-job", "--timeout", "2")
    took = time.monotonic() - t0
    # Then it gives up at once (before: 60 s whatever --timeout said), with one line saying why
    assert code == 2, err
    assert "cannot connect to RabbitMQ" in err and "connection refused" in err.lower(), err
    assert took < 6, took


@pytest.mark.parametrize("command", [
    ("jobs", "show", "some-job"), ("jobs", "result", "some-job"), ("jobs", "scheduled"),
    ("jobs", "cancel", "some-job"), ("jobs", "run-now", "some-job"),
])
async def test_a_jobs_command_on_a_broker_that_is_down_says_so_at_once(cli, monkeypatch, command):
    # Given a broker address where nothing listens (the broker is down)
    monkeypatch.setenv("QUEUEWATCH_AMQP_URL", f"amqp://guest:guest@127.0.0.1:{free_port()}/")
    # When the command runs
    t0 = time.monotonic()
    code, _, err = await cli(*command)
    took = time.monotonic() - t0
    # Then it ends after one round of connect attempts, as `status` does, with the reason
    # (before: it waited out 60 s of reconnects first, saying nothing meanwhile)
    print(f"{' '.join(command)}: exit {code} after {took:.1f}s: {err.strip()}")
    assert code == 2 and "cannot connect to RabbitMQ" in err, (code, err)
    assert len(err.strip().splitlines()) == 1, err
    assert took < 20, took


async def test_result_timeout_bounds_the_command_when_the_broker_is_silent(cli, monkeypatch, settings):  # type: ignore[no-untyped-def]
    from urllib.parse import urlsplit

    from tests.proxy import TcpProxy

    with TcpProxy(("127.0.0.1", urlsplit(settings.amqp_url).port or 5672)) as proxy:
        # Given a network that takes connections and answers nothing
        proxy.blackhole()
        monkeypatch.setenv("QUEUEWATCH_AMQP_URL", f"amqp://guest:guest@127.0.0.1:{proxy.port}/")
        # When a script waits for a result with --timeout 2
        t0 = time.monotonic()
        code, _, err = await cli("jobs", "result", "some-job", "--timeout", "2")
        took = time.monotonic() - t0
    # Then it gives up after about 2 s (not the 10 s connect timeout), saying why
    assert code == 2 and "no connection to RabbitMQ" in err and "within 2s" in err, (code, err)
    assert took < 6, took


async def test_result_timeout_still_answers_the_truth_when_the_broker_does(cli, connection,
                                                                          settings, vhost):
    # Given a job that finishes and one that never runs (no worker for its queue)
    topo = await declare(connection, vhost, QueueSpec("jobs"), QueueSpec("idle"))
    worker = Worker(settings, topo)

    @worker.job("jobs")
    async def handle(job: Job) -> dict[str, int]:
        return {"n": 7}

    async with running(worker), AsyncProducer(settings, topo) as producer:
        await producer.publish("jobs", {}, job_id="done-1")
        await producer.publish("idle", {}, job_id="waits-1")
        # When a script asks for each with a short timeout
        code, out, err = await cli("jobs", "result", "done-1", "--timeout", "5")
        assert code == 0 and json.loads(out) == {"n": 7}, (code, out, err)
        t0 = time.monotonic()
        code, out, err = await cli("jobs", "result", "waits-1", "--timeout", "1")
        took = time.monotonic() - t0
    # Then the finished one prints its result, and the other ends at its timeout, queued
    assert code == 1 and "did not finish within" in err and "queued" in err, (code, err)
    assert took < 4, took

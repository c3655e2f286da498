"""The example services in producers/ and consumers/ and ``queuewatch worker``: they run
against a real vhost, do their work, and exit cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import aio_pika
import pytest

from queuewatch.broker.connect import connect
from queuewatch.broker.declare import declare_topology
from queuewatch.topology import load_topology
from tests.conftest import make_vhost
from tests.helpers import depth, wait_until

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY = ROOT / "consumers" / "demo_topology.toml"


def spawn(*argv: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*argv], cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT)


async def stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    # 0.1-0.3 s idle. The bound is the worker's own: its 30 s shutdown deadline, plus the
    # closes (a child that lost the stop, queuewatch.aio, was killed at 40 s: CI failed so)
    code = await asyncio.to_thread(proc.wait, 45)
    assert code == 0, log.read_text()[-3000:]


@pytest.mark.slow
async def test_demo_producer_and_worker_run_and_stop_cleanly(settings, vhost, tmp_path, mgmt):
    topology = load_topology(TOPOLOGY)
    conn = await connect(settings)
    await declare_topology(conn, topology, vhost)
    url = ["--amqp-url", settings.amqp_url, "--vhost", vhost]
    plog, wlog = tmp_path / "producer.log", tmp_path / "worker.log"
    # Given the demo producer with a burst bigger than the orders cap (2000)
    producer = spawn(sys.executable, "producers/demo_producer.py", *url, "--rate", "100",
                     "--burst-every", "1", "--burst-size", "2500", log=plog)
    try:
        await wait_until(lambda: "refused by the cap" in plog.read_text(), timeout=20,
                         what="a burst hitting the cap")
        # When the demo worker runs
        worker = spawn(sys.executable, "consumers/demo_worker.py", *url, "--fail-ratio", "0.3",
                       "--poison-ratio", "0.05", "--slow-ratio", "0", log=wlog)
        try:
            async def drained() -> bool:
                return await depth(conn, "orders") < 2000
            await wait_until(drained, timeout=20, what="orders being consumed")
            async def dead_letters() -> bool:
                return await depth(conn, "emails.dlq") > 0
            # poison jobs die after 4 attempts with 1 + 2 + 4 s of backoff; allow for a loaded CI
            await wait_until(dead_letters, timeout=60, what="poison emails in the DLQ")
        finally:
            await stop(worker, wlog)
    finally:
        await stop(producer, plog)
    await conn.close()
    assert "back-pressure" in plog.read_text()


async def test_queuewatch_worker_cli_runs_an_app(settings, vhost, tmp_path, connection):
    topology = load_topology(TOPOLOGY)
    await declare_topology(connection, topology, vhost)
    channel = await connection.channel()
    for i in range(20):
        await channel.default_exchange.publish(
            aio_pika.Message(b'{"to": "a@example.com"}', content_type="application/json",
                             message_id=f"m{i}"), routing_key="emails")
    await channel.close()
    log = tmp_path / "cli.log"
    qw = str(Path(sys.executable).with_name("queuewatch"))
    proc = spawn(qw, "worker", "consumers/email_worker.py:make_worker", "--amqp-url",
                 settings.amqp_url, "--vhost", vhost, "--concurrency", "4", log=log)
    try:
        async def consumed() -> bool:
            return await depth(connection, "emails") == 0
        await wait_until(consumed, timeout=20, what="emails consumed by the CLI worker")
    finally:
        await stop(proc, log)
    assert "concurrency 4" in log.read_text()


@pytest.mark.slow
async def test_sigterm_at_any_moment_of_a_first_start_stops_every_process(
        base_settings, admin_http, tmp_path):
    # Given worker processes starting for the first time in a new vhost (each declares the
    # streams, the rate-limit queues, and races the others), 8 times
    qw = str(Path(sys.executable).with_name("queuewatch"))
    rng = random.Random(1)
    slow: list[str] = []
    for i in range(8):
        vhost = make_vhost(admin_http, base_settings, f"first-start-{i}")
        try:
            conn = await connect(replace(base_settings, vhost=vhost))
            await declare_topology(conn, load_topology(TOPOLOGY), vhost)
            await conn.close()
            log = tmp_path / f"run-{i}.log"
            proc = spawn(qw, "worker", "consumers/email_worker.py:make_worker", "--amqp-url",
                         base_settings.amqp_url, "--vhost", vhost, "--processes", "4", log=log)
            # When SIGTERM comes at another moment of the start each time
            delay = rng.uniform(0.5, 2.5)
            await asyncio.sleep(delay)
            proc.send_signal(signal.SIGTERM)
            # Then every process has stopped, cleanly, within seconds (a lost stop kept a
            # child until its supervisor killed it at 40 s, in 5 of 67 starts)
            try:
                code = await asyncio.to_thread(proc.wait, 15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                code = None
            started = "started (pid" in log.read_text()
            if code != 0 and not (code == -signal.SIGTERM and not started):
                # (killed by the signal before it had started anything: its default action)
                slow.append(f"SIGTERM at {delay:.1f}s: exit {code}\n{log.read_text()[-1500:]}")
        finally:
            admin_http.delete(f"/vhosts/{quote(vhost, safe='')}")
    assert not slow, "\n".join(slow)


def test_queuewatch_worker_cli_reports_a_bad_app(tmp_path):
    qw = str(Path(sys.executable).with_name("queuewatch"))
    result = subprocess.run([qw, "worker", "nosuchmodule_xyz:app"], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "nosuchmodule_xyz" in result.stderr

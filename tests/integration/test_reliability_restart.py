"""Restart the broker under a producer and a worker: nothing confirmed is lost, and the worker
consumes again soon after. The restart happens on a throwaway RabbitMQ node this test starts
on free ports (never the shared node)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from queuewatch.broker.connect import connect
from queuewatch.config import Settings, load_settings
from queuewatch.declare import declare_topology
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec, Topology
from queuewatch.worker import Job, Worker
from tests.helpers import Ledger, wait_until

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    name: str
    port: int
    proc: subprocess.Popen[bytes]

    def ctl(self, *args: str) -> None:
        subprocess.run([str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.name, *args],
                       check=True, capture_output=True, timeout=60)

    def is_up(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False


@pytest.fixture
def throwaway_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    if not (RABBITMQ_BIN / "rabbitmq-server").exists():
        pytest.skip("rabbitmq-server is not installed here")
    base = tmp_path_factory.mktemp("rmq")
    port = free_port()
    name = f"qwt-{uuid.uuid4().hex[:8]}@localhost"
    (base / "plugins").write_text("[].\n")
    (base / "rabbitmq.conf").write_text(f"listeners.tcp.default = {port}\nloopback_users = none\n")
    env = dict(os.environ,
               RABBITMQ_NODENAME=name, RABBITMQ_NODE_PORT=str(port),
               RABBITMQ_DIST_PORT=str(free_port()), RABBITMQ_MNESIA_BASE=str(base / "mnesia"),
               RABBITMQ_LOG_BASE=str(base / "log"), RABBITMQ_ENABLED_PLUGINS_FILE=str(base / "plugins"),
               RABBITMQ_CONFIG_FILE=str(base / "rabbitmq"), RABBITMQ_FEATURE_FLAGS_FILE=str(base / "ff"),
               RABBITMQ_PLUGINS_EXPAND_DIR=str(base / "expand"), RABBITMQ_PID_FILE=str(base / "pid"))
    proc = subprocess.Popen([str(RABBITMQ_BIN / "rabbitmq-server")], env=env, cwd=base,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    node = Node(name, port, proc)
    try:
        deadline = time.monotonic() + 60
        while not node.is_up():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"throwaway RabbitMQ node did not start (see {base}/log)")
            time.sleep(0.25)
        yield node
    finally:
        try:
            node.ctl("stop")
        except (subprocess.SubprocessError, OSError):
            pass
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # our own session only
            proc.wait(10)
        shutil.rmtree(base, ignore_errors=True)


async def jobs_on(node: Node, state_dir: Path) -> tuple[Settings, Topology]:
    """Settings for the throwaway node, with queue "jobs" declared on it."""
    settings = replace(
        load_settings(env={}, amqp_url=f"amqp://guest:guest@127.0.0.1:{node.port}/", vhost="/"),
        state_dir=state_dir,
    )
    topo = Topology(queues=(QueueSpec("jobs"),), delay_levels=1)
    conn = await connect(settings)
    await declare_topology(conn, topo, "/")
    await conn.close()
    return settings, topo


@pytest.mark.slow
async def test_broker_restart_loses_no_confirmed_job(throwaway_node: Node, tmp_path):
    node = throwaway_node
    settings, topo = await jobs_on(node, tmp_path)

    ledger = Ledger()
    handled_at: list[float] = []
    worker = Worker(settings, topo, concurrency=20, reconnect_delay=0.5)

    @worker.job("jobs")
    async def handle(job: Job) -> None:
        ledger.record_received([job.job_id])
        handled_at.append(time.monotonic())
        await asyncio.sleep(0.002)

    worker_task = asyncio.create_task(worker.run())
    await wait_until(worker.connected.is_set, timeout=10, what="worker up")

    async def produce() -> None:
        async with AsyncProducer(settings, topo, window=64) as producer:
            futs = {}
            for i in range(5000):
                jid = f"job-{i:05d}"
                ledger.sent.add(jid)
                futs[jid] = await producer.submit("jobs", {"i": i}, job_id=jid)
                if i % 10 == 0:
                    await asyncio.sleep(0.01)  # spread publishing over a few seconds
            await producer.flush()
            assert producer.reconnects >= 1
        for jid, fut in futs.items():
            if fut.exception() is None:
                ledger.confirmed.add(jid)

    # Given a producer and a worker under way
    producing = asyncio.create_task(produce())
    await wait_until(lambda: len(ledger.received) > 300, timeout=15, what="consumption under way")
    # When the broker application restarts
    await asyncio.to_thread(node.ctl, "stop_app")
    await asyncio.sleep(1.0)
    await asyncio.to_thread(node.ctl, "start_app")
    back = time.monotonic()
    # Then the worker consumes again within 10 s
    await wait_until(lambda: any(t > back for t in handled_at), timeout=10,
                     what="consumption after the restart")
    await asyncio.wait_for(producing, 90)
    # And every confirmed job arrives
    await wait_until(lambda: ledger.confirmed <= set(ledger.received), timeout=30,
                     what="all confirmed jobs")
    worker.stop()
    await asyncio.wait_for(worker_task, 30)
    assert len(ledger.confirmed) == 5000, ledger.summary()
    assert ledger.lost == set() and ledger.unexpected == set(), ledger.summary()
    assert worker.connections >= 2


@pytest.mark.slow
async def test_blocked_broker_pauses_publishing_and_resumes(throwaway_node: Node, tmp_path):
    node = throwaway_node
    settings, topo = await jobs_on(node, tmp_path)
    async with AsyncProducer(settings, topo) as producer:
        await producer.publish("jobs", {"n": 0})
        assert not producer.blocked
        # When a memory alarm goes off (a tiny watermark on this throwaway node only)
        await asyncio.to_thread(node.ctl, "set_vm_memory_high_watermark", "0.000001")
        try:
            pending = asyncio.ensure_future(producer.publish("jobs", {"n": 1}))
            await wait_until(lambda: producer.blocked, timeout=15, what="connection.blocked")
            # Then publishing waits instead of failing
            await asyncio.sleep(1.0)
            assert not pending.done()
        finally:
            await asyncio.to_thread(node.ctl, "set_vm_memory_high_watermark", "0.4")
        # And resumes once the broker unblocks
        result = await asyncio.wait_for(pending, 20)
        assert result.queue == "jobs" and not producer.blocked

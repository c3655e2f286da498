"""A 3-node cluster on loopback: clients given every node's address keep working when the
node they use dies, and nothing confirmed is lost.

Ledgers of job ids: every confirmed job must be received (lost = 0); duplicates are allowed
(at-least-once) and reported. Liveness is measured as the time from the kill to the next
confirm (producer) and to the next job done (worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from queuewatch.broker.connect import connect_one
from queuewatch.config import Settings, load_settings
from queuewatch.errors import QueueDown
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec, Topology
from queuewatch.worker import Job, Worker
from tests.cluster import Cluster
from tests.helpers import Ledger, wait_until

pytestmark = pytest.mark.slow

RESUME_WITHIN = 10.0


def cluster_settings(cluster: Cluster, state: Path, first: int = 0) -> Settings:
    urls = cluster.amqp_urls[first:] + cluster.amqp_urls[:first]
    mgmt = cluster.management_urls[first:] + cluster.management_urls[:first]
    return replace(load_settings(env={}, amqp_urls=tuple(urls), management_urls=tuple(mgmt),
                                 vhost="/", heartbeat=5), state_dir=state)


def queue_info(cluster: Cluster, via: int, name: str) -> dict[str, object]:
    node = cluster.nodes[via]
    req = urllib.request.Request(f"{node.management_url}/api/queues/%2F/{name}")
    req.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")  # guest:guest, a test node
    with urllib.request.urlopen(req, timeout=10) as resp:
        return dict(json.load(resp))


async def declare_on(settings: Settings, address: str, spec: QueueSpec) -> None:
    conn = await connect_one(settings, address)
    try:
        channel = await conn.channel()
        await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments())
    finally:
        await conn.close()


class Run:
    """A producer publishing a job every ``every`` seconds and a worker doing them, with a
    ledger and the times of every confirm and every job done."""

    def __init__(self, settings: Settings, queue: QueueSpec, every: float = 0.02) -> None:
        self.settings = settings
        self.topo = Topology(queues=(queue,), delay_levels=1)
        self.queue = queue.name
        self.every = every
        self.ledger = Ledger()
        self.confirmed_at: list[float] = []
        self.done_at: list[float] = []
        self.stop = asyncio.Event()
        self.worker = Worker(settings, self.topo, idempotency=False, metrics=False,
                             worker_id="qwt-cluster-worker")

        @self.worker.job(queue.name)
        async def handle(job: Job) -> None:
            self.ledger.record_received([job.job_id])
            self.done_at.append(time.monotonic())

    async def produce(self) -> None:
        async with AsyncProducer(self.settings, self.topo, connection_name="qwt-cluster-producer") as p:
            i = 0
            while not self.stop.is_set():
                jid = f"job-{i}"
                i += 1
                self.ledger.sent.add(jid)
                with contextlib.suppress(Exception):  # an unconfirmed publish is not in the ledger
                    await p.publish(self.queue, {"i": i}, job_id=jid)
                    self.ledger.confirmed.add(jid)
                    self.confirmed_at.append(time.monotonic())
                await asyncio.sleep(self.every)

    def first_after(self, times: list[float], t: float) -> float | None:
        return next((x - t for x in times if x > t), None)


async def run_with_fault(run: Run, fault, settle: float = 2.0, after: float = 12.0) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Start both, wait ``settle``, apply ``fault()`` (in a thread), keep going ``after``
    seconds, stop producing, drain. Returns (producer resume, worker resume) in seconds."""
    worker_task = asyncio.create_task(run.worker.run())
    producer_task = asyncio.create_task(run.produce())
    await wait_until(lambda: len(run.done_at) > 10, timeout=30, what="jobs flowing before the fault")
    await asyncio.sleep(settle)
    t_fault = time.monotonic()
    await asyncio.to_thread(fault)
    await asyncio.sleep(after)
    run.stop.set()
    await producer_task
    await wait_until(lambda: not run.ledger.lost, timeout=90, interval=0.5,
                     what=f"every confirmed job done ({len(run.ledger.lost)} missing)")
    run.worker.stop()
    await asyncio.wait_for(worker_task, 60)
    p = run.first_after(run.confirmed_at, t_fault)
    w = run.first_after(run.done_at, t_fault)
    assert p is not None and w is not None, "no work after the fault"
    return p, w


async def test_kill9_of_the_node_clients_use(cluster: Cluster, tmp_path: Path) -> None:
    # Given a producer and a worker whose first address is node 0, on a quorum queue
    # (replicated on all three nodes)
    settings = cluster_settings(cluster, tmp_path)
    spec = QueueSpec("jobs-k9", queue_type="quorum", max_priority=0, dlq=False)
    await declare_on(settings, cluster.amqp_urls[1], spec)
    run = Run(settings, spec)
    # When node 0 is killed with SIGKILL mid-stream
    p, w = await run_with_fault(run, lambda: cluster.kill9(0))
    summary = run.ledger.summary()
    print(f"node kill: producer resumed after {p:.2f}s, worker after {w:.2f}s; {summary}")
    # Then both continue on another node within 10 s and no confirmed job is lost
    assert summary["lost"] == 0, summary
    assert p < RESUME_WITHIN and w < RESUME_WITHIN, (p, w)


async def test_kill9_of_a_quorum_queue_leader(cluster: Cluster, tmp_path: Path) -> None:
    # Given clients on node 0 and a quorum queue whose leader is node 2
    settings = cluster_settings(cluster, tmp_path)
    spec = QueueSpec("jobs-leader", queue_type="quorum", max_priority=0, dlq=False)
    await declare_on(settings, cluster.amqp_urls[2], spec)
    leader = str(queue_info(cluster, 0, spec.name).get("leader"))
    victim = cluster.names.index(leader)
    if victim == 0:  # the leader must not be the clients' node here (that is the test above)
        pytest.skip("the leader landed on the clients' node")
    run = Run(settings, spec)
    # When the leader is killed
    p, w = await run_with_fault(run, lambda: cluster.kill9(victim))
    summary = run.ledger.summary()
    print(f"leader kill: producer resumed after {p:.2f}s, worker after {w:.2f}s; {summary}")
    # Then a new leader takes over: nothing lost, consumption continues
    assert summary["lost"] == 0, summary
    assert p < RESUME_WITHIN and w < RESUME_WITHIN, (p, w)


async def test_classic_queue_node_down_then_back(cluster: Cluster, tmp_path: Path) -> None:
    # Given a classic queue living on node 1, with confirmed jobs in it, and a worker whose
    # connection is on node 0
    settings = cluster_settings(cluster, tmp_path)
    spec = QueueSpec("jobs-classic", max_priority=0, dlq=False)
    await declare_on(settings, cluster.amqp_urls[1], spec)
    topo = Topology(queues=(spec,), delay_levels=1)
    ledger = Ledger()
    async with AsyncProducer(settings, topo) as producer:
        for i in range(200):
            jid = f"c-{i}"
            ledger.sent.add(jid)
            await producer.publish(spec.name, {"i": i}, job_id=jid)
            ledger.confirmed.add(jid)
    gate = asyncio.Event()
    worker = Worker(settings, topo, idempotency=False, metrics=False, prefetch=1, worker_id="qwt-classic")

    @worker.job(spec.name)
    async def handle(job: Job) -> None:
        await gate.wait()  # hold the first jobs until the node is gone
        ledger.record_received([job.job_id])

    task = asyncio.create_task(worker.run())
    await wait_until(lambda: bool(worker.processor.running), timeout=30, what="a job running")
    # When node 1 (the queue's home) is killed
    await asyncio.to_thread(cluster.kill9, 1)
    # Then a publish to it says the queue is down (not "unroutable: declare the topology",
    # not "full"), and nothing is accepted
    async with AsyncProducer(settings, topo, connection_name="qwt-classic-down") as producer:
        with pytest.raises(QueueDown) as down:
            await producer.publish(spec.name, {"late": True}, job_id="late")
    assert "is down" in str(down.value)
    sub_state = None
    with contextlib.suppress(AssertionError):
        await wait_until(lambda: not _consuming(worker, spec.name), timeout=20,
                         what="the worker to say it does not consume")
        sub_state = _state(worker, spec.name)
    gate.set()
    # Then, when the node is back, the worker consumes the queue again: every job is done
    t_back = time.monotonic()
    await asyncio.to_thread(cluster.restart, 1)
    await wait_until(lambda: not ledger.lost, timeout=120, interval=0.5,
                     what=f"every job done after the node came back ({len(ledger.lost)} missing)")
    resumed = time.monotonic() - t_back
    worker.stop()
    await asyncio.wait_for(task, 60)
    print(f"classic queue node back: all done {resumed:.1f}s after restart began; "
          f"state while down: {sub_state}; {ledger.summary()}")
    assert sub_state is not None, "the worker never reported that it was not consuming"
    assert ledger.summary()["lost"] == 0


def _state(worker: Worker, queue: str) -> object:
    return worker.subscriptions[queue].state


def _consuming(worker: Worker, queue: str) -> bool:
    return worker.subscriptions[queue].live

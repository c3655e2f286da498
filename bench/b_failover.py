"""Failover: time from a node kill to the first job consumed on another node.

A throwaway 3-node cluster on loopback (the test suite's ``tests/cluster.py``; the machine's
own broker is never touched). A quorum queue on all three nodes; a publisher on node 2 sends
a job every 10 ms; the consumer under test is connected to node 0 with every node's address
in its list. Node 0 is killed with SIGKILL; the figure is the time until the consumer
handles its next job. Node 0 is started again before the next run (not timed).

Contenders: the queuewatch worker (``BrokerLink``: failover along ``amqp_urls``) and a plain
aio-pika ``connect_robust`` consumer — which takes one URL and reconnects only to it, so it
resumes when node 0 is back (the bench restarts it at once, as an orchestrator would).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import aio_pika

from bench.harness import Bench, Row, Section, Target, verdict
from bench.stats import fmt_ratio, ratio, stat
from queuewatch.config import load_settings
from queuewatch.topology import QueueSpec, Topology
from queuewatch.worker import Job, Worker

QUEUE = "failover"
PUBLISH_EVERY = 0.01
GIVE_UP = 120.0

Consumer = Callable[[list[str], asyncio.Event], Awaitable[Callable[[], Awaitable[None]]]]


async def _queuewatch(urls: list[str], got: asyncio.Event) -> Callable[[], Awaitable[None]]:
    settings = replace(load_settings(env={}, amqp_urls=tuple(urls), vhost="/", heartbeat=5),
                       state_dir=Path(tempfile.mkdtemp(prefix="qwb-fo-")))
    worker = Worker(settings, Topology(queues=(QueueSpec(QUEUE, queue_type="quorum", max_priority=0,
                                                         dlq=False),), delay_levels=1),
                    idempotency=False, metrics=False, worker_id="bench-failover")

    @worker.job(QUEUE)
    async def handle(job: Job) -> None:
        got.set()

    task = asyncio.create_task(worker.run())

    async def stop() -> None:
        worker.stop()
        await asyncio.wait_for(task, 60)
    return stop


async def _robust(urls: list[str], got: asyncio.Event) -> Callable[[], Awaitable[None]]:
    conn = await aio_pika.connect_robust(urls[0] + "?heartbeat=5")
    channel = await conn.channel()
    await channel.set_qos(prefetch_count=100)
    queue = await channel.get_queue(QUEUE)

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await message.ack()
        got.set()

    await queue.consume(on_message)

    async def stop() -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.close(), 10)
    return stop


async def _publisher(url: str, stop: asyncio.Event) -> None:
    conn = await aio_pika.connect_robust(url)
    channel = await conn.channel()
    while not stop.is_set():
        with contextlib.suppress(Exception):
            await channel.default_exchange.publish(aio_pika.Message(b"{}"), QUEUE)
        await asyncio.sleep(PUBLISH_EVERY)
    await conn.close()


async def _one_kill(cluster, consumer: Consumer) -> float:  # type: ignore[no-untyped-def]
    got = asyncio.Event()
    stop_pub = asyncio.Event()
    pub = asyncio.create_task(_publisher(cluster.amqp_urls[2], stop_pub))
    stop = await consumer(cluster.amqp_urls, got)
    try:
        try:
            await asyncio.wait_for(got.wait(), 60)  # consuming before the fault
        except TimeoutError:
            raise RuntimeError("the consumer got nothing within 60 s before the fault") from None
        await asyncio.sleep(1.0)
        got.clear()
        t0 = time.monotonic()
        await asyncio.to_thread(cluster.kill9, 0)
        got.clear()  # a delivery already in flight at the kill does not count
        restart = asyncio.create_task(asyncio.to_thread(cluster.restart, 0))
        try:
            await asyncio.wait_for(got.wait(), GIVE_UP)
            elapsed = time.monotonic() - t0
        except TimeoutError:
            elapsed = GIVE_UP  # censored: did not resume within the bound (noted in the report)
        finally:
            await restart
        return elapsed
    finally:
        stop_pub.set()
        await pub
        await stop()


async def run(bench: Bench) -> list[Section]:
    section = Section(
        key="failover",
        title="Failover: node kill to the first job consumed on another node",
        measures=(
            "3-node loopback cluster, quorum queue on all nodes, a publisher on node 2 every "
            "10 ms; the consumer's first address is node 0, which is killed with SIGKILL. "
            "Seconds until the consumer handles its next job (lower is better). Ratio: "
            "aio-pika connect_robust's time / queuewatch's (runs interleaved; node 0 is "
            "restarted at once after each kill, which is when connect_robust can resume)."
        ),
        columns=["consumer", "result", "ratio"],
    )
    if bench.quick:
        section.notes.append("not run with --quick (it starts a 3-node cluster)")
        return [section]
    try:
        from tests.cluster import start_cluster
    except ImportError as exc:  # pragma: no cover - bench run outside the repository
        section.notes.append(f"not available: {exc}")
        return [section]
    base = Path(tempfile.mkdtemp(prefix="qwb-cluster-"))
    cluster = await asyncio.to_thread(start_cluster, base)
    try:
        conn = await aio_pika.connect(cluster.amqp_urls[1])
        channel = await conn.channel()
        await channel.declare_queue(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
        await conn.close()
        samples: dict[str, list[float]] = {"queuewatch": [], "aio-pika connect_robust": []}
        contenders: list[tuple[str, Consumer]] = [
            ("queuewatch", _queuewatch), ("aio-pika connect_robust", _robust)]
        for _ in range(bench.runs):
            for key, consumer in contenders:
                samples[key].append(await _one_kill(cluster, consumer))
                print(f"  {key}: {samples[key][-1]:.2f}s", file=sys.stderr, flush=True)
                await asyncio.to_thread(cluster.ensure_whole)
    finally:
        await asyncio.to_thread(cluster.close)
    for key, values in samples.items():
        stuck = sum(1 for v in values if v >= GIVE_UP)
        if stuck:
            section.notes.append(f"{key}: {stuck} of {len(values)} runs consumed nothing within "
                                 f"{GIVE_UP:g} s of the kill (counted as {GIVE_UP:g} s)")
    ours = stat(samples["queuewatch"], "s")
    theirs = stat(samples["aio-pika connect_robust"], "s")
    r = ratio(theirs, ours)
    section.rows.append(Row("queuewatch worker (amqp_urls failover)",
                            {"result": ours.fmt(), "ratio": "1.00× (baseline)"}, ours))
    section.rows.append(Row("aio-pika connect_robust (one URL)",
                            {"result": theirs.fmt(), "ratio": fmt_ratio(r)}, theirs))
    section.targets.append(Target("failover: node kill to next job", "< 10 s",
                                  ours.fmt(), verdict(ours.median < 10)))
    return [section]

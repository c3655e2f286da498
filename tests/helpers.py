"""Test helpers: waiting, exact queue depths over AMQP, Jepsen-style ledgers, a stuck worker."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from queuewatch.broker.declare import declare_topology
from queuewatch.broker.management import ManagementClient
from queuewatch.config import Settings
from queuewatch.topology import QueueSpec, Topology
from queuewatch.worker import Job, Worker


async def wait_until(
    predicate: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout: float = 10.0,
    interval: float = 0.1,
    what: str = "condition",
) -> None:
    """Poll ``predicate`` until it is true; fail the test with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


async def depth(connection: AbstractConnection, queue: str) -> int:
    """Exact number of ready messages right now (passive declare, not the 5 s-old stats)."""
    channel = await connection.channel()
    try:
        q = await channel.declare_queue(queue, passive=True)
        return int(q.declaration_result.message_count or 0)
    finally:
        await channel.close()


async def consumers(connection: AbstractConnection, queue: str) -> int:
    """Consumers of ``queue`` right now (passive declare)."""
    channel = await connection.channel()
    try:
        q = await channel.declare_queue(queue, passive=True)
        return int(q.declaration_result.consumer_count or 0)
    finally:
        await channel.close()


async def drain(
    connection: AbstractConnection, queue: str, n: int, timeout: float = 10.0
) -> list[AbstractIncomingMessage]:
    """Take up to ``n`` messages from ``queue`` (basic.get, acked), in queue order, within ``timeout``."""
    channel = await connection.channel()
    got: list[AbstractIncomingMessage] = []
    deadline = time.monotonic() + timeout
    q = await channel.declare_queue(queue, passive=True)
    while len(got) < n and time.monotonic() < deadline:
        msg = await q.get(fail=False)
        if msg is None:
            await asyncio.sleep(0.05)
            continue
        await msg.ack()
        got.append(msg)
    await channel.close()
    return got


async def declare(
    connection: AbstractConnection,
    vhost: str,
    *specs: QueueSpec,
    mgmt: ManagementClient | None = None,
    delay_levels: int = 8,
) -> Topology:
    topology = Topology(queues=tuple(specs), delay_levels=delay_levels)
    await declare_topology(connection, topology, vhost, mgmt)
    return topology


@dataclass
class Ledger:
    """Every message id sent, confirmed and received; then count lost and duplicated."""

    sent: set[str] = field(default_factory=set)
    confirmed: set[str] = field(default_factory=set)
    received: Counter[str] = field(default_factory=Counter)

    def record_received(self, ids: Iterable[str]) -> None:
        self.received.update(ids)

    @property
    def lost(self) -> set[str]:
        """Confirmed by the broker, never received."""
        return self.confirmed - set(self.received)

    @property
    def duplicated(self) -> int:
        return sum(n - 1 for n in self.received.values() if n > 1)

    @property
    def unexpected(self) -> set[str]:
        return set(self.received) - self.sent

    def summary(self) -> dict[str, Any]:
        return {
            "sent": len(self.sent), "confirmed": len(self.confirmed),
            "received_unique": len(self.received), "lost": len(self.lost),
            "duplicated": self.duplicated, "unexpected": len(self.unexpected),
        }


def stuck_worker(settings: Settings, topo: Topology, queue: str,
                 worker_id: str) -> tuple[Worker, asyncio.Event]:
    """A real worker whose handler for ``queue`` hangs once it starts (60 s); the event is
    set when it starts (idempotency store and metrics off)."""
    started = asyncio.Event()
    worker = Worker(settings, topo, worker_id=worker_id, idempotency=False, metrics=False)

    @worker.job(queue)
    async def hang(job: Job) -> None:
        started.set()
        await asyncio.sleep(60)

    return worker, started


async def redis_client() -> Any:
    """A client of the Redis server at 127.0.0.1:6379, or the test is skipped: queuewatch never
    needs Redis, its Redis store is tested where a server happens to run."""
    import pytest

    redis = pytest.importorskip("redis.asyncio")
    client = redis.from_url("redis://127.0.0.1:6379/0")
    try:
        await client.ping()
    except Exception:
        await client.aclose()
        pytest.skip("no Redis server at 127.0.0.1:6379")
    return client
